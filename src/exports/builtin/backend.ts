/**
 * `iscsi_backend: builtin`: the daemon's own iSCSI target. apply() turns the desired export state into
 * logical units (one per exported volume, shared by every initiator and session that maps it), per-initiator
 * LUN maps in the SCSI target, and the ACL/CHAP table the login consults.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { DigestName, InitiatorAccess } from '../../iscsi/login/index.js';
import {
  FileBackingStore,
  type FileOps,
  LogicalUnit,
  type PersistedPrState,
  type PrStore,
} from '../../iscsi/lu/index.js';
import { type BoundPortal, IscsiPortal, LoginThrottle } from '../../iscsi/portal/index.js';
import { ScsiTarget } from '../../iscsi/scsi/index.js';
import { IscsiTarget, type SessionLimits } from '../../iscsi/session/index.js';
import type { Logger } from '../../log.js';
import { preadNowait, punchHole, seekData, seekHole } from '../../native/index.js';
import { writeFileAtomic } from '../../store/atomic-file.js';
import type { DesiredExports, ExportBackend, LunMapping } from '../types.js';

export interface BuiltinBackendOptions {
  targetName: string;
  /** Addresses to listen on (IPv4/IPv6 literals; 0.0.0.0 / :: for all). */
  portalAddresses: readonly string[];
  port: number;
  /** The daemon's state directory; persistent reservations go to `<stateDir>/builtin/`. */
  stateDir: string;
  logger: Logger;
  /** Hole punching and SEEK_DATA/SEEK_HOLE; the native addon by default. */
  fileOps?: FileOps;
  limits?: Partial<SessionLimits>;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /** `required`: only CRC32C is negotiated, a login offering only None fails; `optional` (default): the initiator's choice. */
  headerDigest?: DigestPolicy;
  dataDigest?: DigestPolicy;
}

export type DigestPolicy = 'optional' | 'required';

/** The digests our side of the login accepts under a policy. */
function digestsFor(policy: DigestPolicy | undefined): DigestName[] {
  return policy === 'required' ? ['CRC32C'] : ['CRC32C', 'None'];
}

interface LuEntry {
  key: string;
  pool: string;
  vol: string;
  uuid: string;
  path: string;
  lu: LogicalUnit;
  /** Set once its file is being closed (unmapped and idle). */
  closingFile?: boolean;
}

/**
 * V8 heap growing factor for a daemon serving the data plane: 1 + percent/100. Every received or read byte
 * passes through an ArrayBuffer, and V8 counts external memory allocated since the last mark-compact against
 * the old generation's limit, which with the daemon's ~12 MB heap is only ~16 MB away: at 700 MiB/s that
 * is 40+ full GCs a second, 40 % of a core (perf: ConcurrentMarking/Sweeper). A factor of 5 moves the limit to
 * ~60 MB: a third of the GCs, +25–35 % MiB/s for 1 MiB writes and reads on the 2-core benchmark VM.
 */
const HEAP_GROWING_PERCENT = 400;
let heapTuned = false;

/**
 * Applies {@link HEAP_GROWING_PERCENT} once per process, unless node was started with its own
 * --heap-growing-percent. V8 reads the flag each time it recomputes its limits, so setting it at run time works.
 */
function tuneHeapGrowing(): void {
  if (heapTuned) return;
  heapTuned = true;
  if (process.execArgv.some((a) => /^--heap[-_]growing[-_]percent/.test(a))) return;
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}

/** How often an unmapped LU with I/O still in flight is checked before its file is closed. */
const CLOSE_POLL_MS = 20;

/** Identity of a volume's LU: a volume re-created under the same name gets a new UUID, hence a new LU. */
function luKey(m: Pick<LunMapping, 'pool' | 'vol' | 'uuid'>): string {
  return `${m.pool}/${m.vol}/${m.uuid}`;
}

/** The built-in iSCSI data plane. */
export class BuiltinExportBackend implements ExportBackend {
  readonly name = 'builtin';
  readonly scsi: ScsiTarget;
  readonly target: IscsiTarget;
  private readonly portal: IscsiPortal;
  private readonly log: Logger;
  private readonly prDir: string;
  private readonly fileOps: FileOps;
  private readonly lus = new Map<string, LuEntry>();
  /** Unmapped LUs whose file stays open until their in-flight commands finish. */
  private readonly closing = new Map<string, LuEntry>();
  private closeTimer: NodeJS.Timeout | undefined;
  /** Last applied LUN map per initiator (lower-cased): LUN → LU key. */
  private maps = new Map<string, Map<number, string>>();
  private prDirReady = false;
  private stopped = false;

  constructor(private readonly opts: BuiltinBackendOptions) {
    this.log = opts.logger;
    this.prDir = join(opts.stateDir, 'builtin');
    this.fileOps = opts.fileOps ?? { punchHole, seekData, seekHole, preadNowait };
    this.scsi = new ScsiTarget({ targetName: opts.targetName, targetPortGroup: 1, logger: opts.logger });
    this.target = new IscsiTarget({
      targetName: opts.targetName,
      portalGroupTag: 1,
      scsi: this.scsi,
      logger: opts.logger,
      throttle: new LoginThrottle(),
      loginParams: { headerDigest: digestsFor(opts.headerDigest), dataDigest: digestsFor(opts.dataDigest) },
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
    this.portal = new IscsiPortal({
      addresses: opts.portalAddresses,
      port: opts.port,
      target: this.target,
      logger: opts.logger,
      ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
      ...(opts.maxConnectionsPerAddress !== undefined
        ? { maxConnectionsPerAddress: opts.maxConnectionsPerAddress }
        : {}),
    });
  }

  /** Opens the portals; call after the first apply() so early logins already see the ACL. */
  async start(): Promise<BoundPortal[]> {
    tuneHeapGrowing();
    const bound = await this.portal.listen();
    for (const b of bound) {
      const host = b.family === 'IPv6' ? `[${b.address}]` : b.address;
      this.log.info(
        { address: b.address, port: b.port, target: this.opts.targetName },
        `iSCSI portal listening on ${host}:${b.port} (target ${this.opts.targetName})`,
      );
    }
    return bound;
  }

  async apply(desired: DesiredExports): Promise<void> {
    if (this.stopped) return;
    if (desired.targetName !== this.target.targetName) {
      this.log.warn(
        { configured: this.target.targetName, desired: desired.targetName },
        'desired target name differs from the configured one; serving the configured name',
      );
    }
    await this.ensurePrDir();

    const wanted = new Map<string, LunMapping>();
    for (const ini of desired.initiators) for (const m of ini.luns) wanted.set(luKey(m), m);

    for (const [key, m] of wanted) {
      const entry = this.lus.get(key) ?? this.revive(key);
      if (!entry) {
        await this.openLu(key, m);
        continue;
      }
      if (m.size !== entry.lu.backing.size()) {
        const before = entry.lu.backing.size();
        await this.scsi.capacityChanged(entry.lu);
        this.log.info(
          { pool: m.pool, vol: m.vol, from: before, to: entry.lu.backing.size() },
          'exported volume resized: initiators get CAPACITY DATA HAS CHANGED',
        );
      }
    }

    const nextMaps = new Map<string, Map<number, string>>();
    const access: [string, InitiatorAccess][] = [];
    for (const ini of desired.initiators) {
      const name = ini.iqn.toLowerCase();
      const map = nextMaps.get(name) ?? new Map<number, string>();
      for (const m of ini.luns) if (this.lus.has(luKey(m))) map.set(m.lun, luKey(m));
      nextMaps.set(name, map);
      access.push([name, { allowed: ini.luns.length > 0, auth: ini.auth }]);
    }
    const changed: string[] = [];
    for (const name of new Set([...this.maps.keys(), ...nextMaps.keys()])) {
      const next = nextMaps.get(name) ?? new Map<number, string>();
      const luns = new Map<number, LogicalUnit>();
      for (const [lun, key] of next) luns.set(lun, this.lus.get(key)!.lu);
      // The SCSI layer raises REPORTED LUNS DATA HAS CHANGED for this initiator's nexuses when it differs.
      this.scsi.setLunMap(name, luns);
      if (!sameMap(this.maps.get(name), next)) changed.push(name);
    }
    this.maps = new Map([...nextMaps].filter(([, m]) => m.size > 0));
    this.target.setAccess(access);
    for (const name of changed) {
      if (this.target.lookupInitiator(name)?.allowed) this.target.lunMapChanged(name);
    }

    for (const [key, entry] of [...this.lus]) {
      if (wanted.has(key)) continue;
      this.lus.delete(key);
      if (this.scsi.busy(entry.lu)) {
        this.closing.set(key, entry);
        this.watchClosing();
      } else {
        await this.closeLu(entry);
      }
    }
  }

  /** True while an unexported volume's LU still has commands in flight (its file is still open). */
  isBusy(pool: string, vol: string): boolean {
    for (const e of this.closing.values()) if (e.pool === pool && e.vol === vol) return true;
    return false;
  }

  /** Closes the portals and sessions (gracefully), then every LU's file. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.portal.close();
    if (this.closeTimer) clearInterval(this.closeTimer);
    this.closeTimer = undefined;
    const all = [...this.lus.values(), ...this.closing.values()];
    this.lus.clear();
    this.closing.clear();
    await Promise.all(all.map((e) => this.closeLu(e)));
  }

  private revive(key: string): LuEntry | undefined {
    const e = this.closing.get(key);
    if (!e || e.closingFile) return undefined;
    this.closing.delete(key);
    this.lus.set(key, e);
    return e;
  }

  private async openLu(key: string, m: LunMapping): Promise<void> {
    try {
      const backing = await FileBackingStore.open(m.path, { ops: this.fileOps });
      const lu = new LogicalUnit({ backing, uuid: m.uuid, prStore: this.prStore(m.uuid) });
      this.lus.set(key, { key, pool: m.pool, vol: m.vol, uuid: m.uuid, path: m.path, lu });
      this.log.info({ pool: m.pool, vol: m.vol, uuid: m.uuid, size: backing.size() }, 'logical unit opened');
    } catch (err) {
      // The registry already holds the export; one unopenable file must not block every other change.
      this.log.error(
        { err, pool: m.pool, vol: m.vol, path: m.path },
        'cannot open exported volume; not served',
      );
    }
  }

  private async closeLu(e: LuEntry): Promise<void> {
    try {
      await e.lu.close();
      this.log.info({ pool: e.pool, vol: e.vol, uuid: e.uuid }, 'logical unit closed');
    } catch (err) {
      this.log.warn({ err, pool: e.pool, vol: e.vol }, 'error closing logical unit');
    }
  }

  private watchClosing(): void {
    if (this.closeTimer) return;
    this.closeTimer = setInterval(() => {
      for (const [key, e] of [...this.closing]) {
        if (e.closingFile || this.scsi.busy(e.lu)) continue;
        e.closingFile = true;
        // Still "busy" until the file is really closed, so vol_destroy never races the close.
        void this.closeLu(e).finally(() => {
          if (this.closing.get(key) === e) this.closing.delete(key);
        });
      }
      if (this.closing.size === 0 && this.closeTimer) {
        clearInterval(this.closeTimer);
        this.closeTimer = undefined;
      }
    }, CLOSE_POLL_MS);
    this.closeTimer.unref?.();
  }

  private async ensurePrDir(): Promise<void> {
    if (this.prDirReady) return;
    await mkdir(this.prDir, { recursive: true, mode: 0o700 });
    this.prDirReady = true;
  }

  /** Removes a destroyed volume's persistent reservations, so they neither pile up nor outlive it. */
  async volumeDestroyed(uuid: string): Promise<void> {
    await rm(this.prFile(uuid), { force: true });
  }

  /** Where one volume's APTPL state lives: `<stateDir>/builtin/pr-<uuid>.json`. */
  private prFile(uuid: string): string {
    const safe = /^[0-9A-Za-z-]{1,64}$/.test(uuid) ? uuid : createHash('sha256').update(uuid).digest('hex');
    return join(this.prDir, `pr-${safe}.json`);
  }

  /** APTPL state of one volume. */
  private prStore(uuid: string): PrStore {
    const file = this.prFile(uuid);
    return {
      load: (): PersistedPrState | undefined => {
        try {
          return JSON.parse(readFileSync(file, 'utf8')) as PersistedPrState;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
            this.log.warn({ err, file }, 'unreadable persistent reservation state ignored');
          }
          return undefined;
        }
      },
      save: (state) => writeFileAtomic(file, `${JSON.stringify(state)}\n`),
    };
  }
}

function sameMap(a: ReadonlyMap<number, string> | undefined, b: ReadonlyMap<number, string>): boolean {
  if (!a) return b.size === 0;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
