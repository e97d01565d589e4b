/**
 * Our own target for the harnesses: the real daemon (`node dist/main.js serve`, via test/helpers/daemon.ts) with
 * `iscsi_backend: builtin`, a file pool `pool1`, and its iSCSI portal on a free port of 127.0.0.1.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonHandle, freePort } from '../../test/helpers/daemon.js';
import { alive, killChild, onAbort } from './proc.js';
import { waitForPort } from './tgt.js';

export const POOL = 'pool1';

export interface Builtin {
  daemon: DaemonHandle;
  /** The daemon's iSCSI portal port on 127.0.0.1. */
  port: number;
  targetName: string;
  /** `<pool dir>/<name>.vol`, the data file of a volume in pool1. */
  volFile(name: string): string;
  /** Saves the daemon's output next to the harness's other logs, then stops it and removes its directory. */
  dispose(logFile?: string): Promise<void>;
}

export type StartResult =
  | { ok: true; builtin: Builtin }
  | { ok: false; unavailable: boolean; reason: string };

/**
 * Starts the daemon. A build that has no built-in target yet refuses the config ("… is not available in this build"):
 * that is reported as `unavailable` rather than thrown, so harnesses can still measure tgt alone.
 *
 * DaemonHandle is driven directly rather than through startDaemon() because startDaemon() loses the handle when
 * start-up times out with the process still running, and we must be able to end that process by its PID. The
 * config is startDaemon()'s, plus the iSCSI keys.
 */
export async function startBuiltin(
  targetName: string,
  backend: 'builtin' | 'none' = 'builtin',
): Promise<StartResult> {
  const dir = await mkdtemp(join(tmpdir(), 'targetd-iscsi-'));
  const port = await freePort();
  const config: Record<string, unknown> = {
    password: 'test-password-1234',
    rpc_address: '127.0.0.1',
    rpc_port: await freePort(),
    state_dir: join(dir, 'state'),
    file_pools: [{ name: POOL, path: join(dir, POOL) }],
    log_level: 'warn',
    iscsi_backend: backend,
    iscsi_port: port,
    portal_addresses: ['127.0.0.1'],
    target_name: targetName,
  };
  const daemon = new DaemonHandle(dir, config);
  const off = onAbort(() => {
    if (daemon.proc) killChild(daemon.proc);
    rmSync(dir, { recursive: true, force: true });
  });
  const dispose = async (logFile?: string) => {
    if (logFile) await writeFile(logFile, daemon.stderr).catch(() => {});
    await daemon.dispose();
    off();
  };
  try {
    await daemon.start();
    if (backend === 'builtin') await waitForPort(port, 10_000);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    if (daemon.proc && alive(daemon.proc)) await daemon.kill('SIGKILL');
    await dispose();
    return { ok: false, unavailable: /not available in this build/.test(reason), reason: reason.trim() };
  }
  return {
    ok: true,
    builtin: {
      daemon,
      port,
      targetName,
      volFile: (name) => join(dir, POOL, `${name}.vol`),
      dispose,
    },
  };
}

/** The first line of a start-up failure worth showing in a one-line status. */
export function shortReason(reason: string): string {
  const key = /iscsi_backend: .*$/m.exec(reason);
  if (key) return key[0];
  const lines = reason.split('\n').map((l) => l.trim());
  return lines.find((l) => /not available|error|invalid/i.test(l)) ?? lines[0] ?? reason;
}
