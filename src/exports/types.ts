/** CHAP credentials of one initiator; a direction is off when its user is null. */
export interface ChapCredentials {
  /** What the initiator must present (target authenticates initiator). */
  in_user: string | null;
  in_pass: string | null;
  /** What the target presents back (mutual CHAP). */
  out_user: string | null;
  out_pass: string | null;
}

/** One LUN as an initiator sees it, resolved to its volume. */
export interface LunMapping {
  lun: number;
  pool: string;
  vol: string;
  /** Volume UUID (hex with dashes): source of the unit serial and NAA identifier. */
  uuid: string;
  size: number;
  /** File or block device holding the data. */
  path: string;
}

/** Everything one initiator may reach: its LUNs (direct or through its access group) and its CHAP. */
export interface InitiatorView {
  iqn: string;
  luns: LunMapping[];
  auth: ChapCredentials | null;
}

/** The desired iSCSI state the data plane must match, derived from the export registry. */
export interface DesiredExports {
  targetName: string;
  /** Every initiator with at least one LUN or with CHAP credentials set. */
  initiators: InitiatorView[];
}

/**
 * A data plane (built-in target, LIO, tgt). It is told the whole desired state and makes its data plane
 * match it; it never calls back into core/. `apply` is called at start-up and after every change
 * (serialized: never two at once), and must be idempotent.
 */
export interface ExportBackend {
  readonly name: string;
  apply(desired: DesiredExports): Promise<void>;
  /** Opens the data plane to initiators; called once, after the first apply, so first logins see every export. */
  start?(): Promise<unknown>;
  /** True while the data plane still holds the volume open (e.g. an I/O in flight after unexport). */
  isBusy?(pool: string, vol: string): boolean;
  /** Forgets what the data plane kept of a destroyed volume (e.g. its persistent reservations), by UUID. */
  volumeDestroyed?(uuid: string): Promise<void>;
  stop(): Promise<void>;
}
