import type { DesiredExports, ExportBackend } from './types.js';

/**
 * `iscsi_backend: none`: the registry is kept and served over the API, but no iSCSI data plane runs.
 * For control-plane-only deployments and tests of the API alone.
 */
export class NoExportBackend implements ExportBackend {
  readonly name = 'none';
  private last: DesiredExports | undefined;

  async apply(desired: DesiredExports): Promise<void> {
    this.last = desired;
  }

  /** The last desired state received, for inspection. */
  current(): DesiredExports | undefined {
    return this.last;
  }

  async stop(): Promise<void> {}
}
