import { createHash } from 'node:crypto';
import type { DesiredExports, ExportBackend, InitiatorView, LunMapping } from '../exports/types.js';
import { JobTable } from '../jobs/job-table.js';
import type { Logger } from '../log.js';
import type { BlockPool, VolumeInfo } from '../pools/types.js';
import { ErrorCode, invalidParam, TargetdError } from '../rpc/errors.js';
import type { AgMap, ChapState, ExportEntry, State } from '../store/state.js';
import type { StateStore } from '../store/state-store.js';
import { KeyedMutex, Mutex } from './mutex.js';

/** pool_list entry, both dialects. */
export interface PoolEntry {
  name: string;
  size: number;
  free_size: number;
  type: 'block';
  uuid: string;
}

/** export_list entry, both dialects (`vol` is the 0.2 name of `vol_name`). */
export interface ExportListEntry {
  initiator_wwn: string;
  lun: number;
  pool: string;
  vol_name: string;
  vol_size: number;
  vol_uuid: string;
  vol: string;
}

export interface ArrayOptions {
  pools: BlockPool[];
  store: StateStore;
  backend: ExportBackend;
  targetName: string;
  /** Seconds a vol_copy may run before it is answered with an async id; 0: at once; -1: never. */
  asyncAfter: number;
  logger: Logger;
}

const MAX_LUN = 255;

/** The access group named `name`, if any. */
function findGroup(state: Readonly<State>, name: string): State['access_groups'][number] | undefined {
  return state.access_groups.find((g) => g.name === name);
}

/** Members of access group `name` (none when it does not exist). */
function members(state: Readonly<State>, name: string): string[] {
  return findGroup(state, name)?.init_ids ?? [];
}

/** Removes a group and its maps. */
function removeGroup(state: State, name: string): void {
  state.access_groups = state.access_groups.filter((g) => g.name !== name);
  state.ag_maps = state.ag_maps.filter((m) => m.ag_name !== name);
}

/** Digits-only pool id, stable for a pool name (clients decode it as string or number). */
function poolUuid(name: string): string {
  return BigInt(`0x${createHash('sha256').update(name).digest('hex').slice(0, 12)}`).toString();
}

/** The first export and the first access-group map of `pool`/`name` in the registry, if any. */
function registryUses(state: Readonly<State>, pool: string, name: string) {
  return {
    e: state.exports.find((x) => x.pool === pool && x.vol === name),
    m: state.ag_maps.find((x) => x.pool === pool && x.vol === name),
  };
}

/**
 * The array: every rule that spans pools, the export registry and async jobs.
 * Locking: a volume's mutations run one at a time under its own lock (so work on different volumes, and
 * its fsyncs, overlap); changes to the registry (state file) run one at a time under the registry lock and
 * are saved durably before they return. Lock order is always volume locks, then the registry lock.
 * Reads take no lock, and the long part of a copy runs outside all of them.
 */
export class StorageArray {
  private readonly pools = new Map<string, BlockPool>();
  private readonly registry = new Mutex();
  private readonly volumeLocks = new KeyedMutex();
  private readonly jobs = new JobTable();
  /** Names reserved by copies in progress: `pool/name`. */
  private readonly reserved = new Set<string>();
  private readonly store: StateStore;
  private readonly backend: ExportBackend;
  private readonly log: Logger;

  constructor(private readonly opts: ArrayOptions) {
    for (const p of opts.pools) this.pools.set(p.name, p);
    this.store = opts.store;
    this.backend = opts.backend;
    this.log = opts.logger;
  }

  /** Start-up: turn copies interrupted by a crash into failures reported once, then push exports to the data plane. */
  async start(): Promise<void> {
    const state = this.store.get();
    const interrupted = Object.entries(state.jobs);
    if (interrupted.length > 0) {
      for (const [id, job] of interrupted) {
        // The pool's rename is the commit point: a listed target means the copy finished before the crash.
        if (await this.pools.get(job.pool)?.get(job.dst)) {
          this.log.info({ async_id: Number(id), ...job }, 'async copy had completed before the restart');
          continue;
        }
        state.failed_jobs[id] = {
          code: ErrorCode.INVALID,
          message: `copy of ${job.pool}/${job.src} to ${job.dst} was interrupted by a daemon restart`,
          percent: 0,
        };
        this.log.warn(
          { async_id: Number(id), ...job },
          'async copy interrupted by restart; reported as failed',
        );
      }
      state.jobs = {};
      await this.store.save(state);
    }
    await this.applyExports();
  }

  /** Stops running copies (their half-made volumes are removed by the pool) and the data plane. */
  async stop(): Promise<void> {
    await this.jobs.abortAll();
    await this.backend.stop();
  }

  private pool(name: string): BlockPool {
    const p = this.pools.get(name);
    if (!p) throw new TargetdError(ErrorCode.INVALID_POOL, `pool '${name}' does not exist`);
    return p;
  }

  private async volume(pool: BlockPool, name: string): Promise<VolumeInfo> {
    const v = await pool.get(name);
    if (!v)
      throw new TargetdError(ErrorCode.NOT_FOUND_VOLUME, `volume '${name}' not found in pool '${pool.name}'`);
    return v;
  }

  /** Runs `task` holding the registry lock. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    return this.registry.run(task);
  }

  /** Runs `task` holding the locks of the given volumes of `pool`. */
  private withVolumes<T>(pool: string, vols: string[], task: () => Promise<T>): Promise<T> {
    return this.volumeLocks.run(
      vols.map((v) => `${pool}/${v}`),
      task,
    );
  }

  // ---- pools and volumes ----

  /** pool_list. */
  async poolList(): Promise<PoolEntry[]> {
    return Promise.all(
      [...this.pools.values()].map(async (p) => {
        const s = await p.stats();
        return {
          name: p.name,
          size: s.size,
          free_size: s.free_size,
          type: 'block' as const,
          uuid: poolUuid(p.name),
        };
      }),
    );
  }

  /** vol_list: `uuid` (0.7) and `UUID` (0.2) carry the same value. */
  async volList(poolName: string): Promise<{ name: string; size: number; uuid: string; UUID: string }[]> {
    const vols = await this.pool(poolName).list();
    return vols.map((v) => ({ name: v.name, size: v.size, uuid: v.uuid, UUID: v.uuid }));
  }

  /** vol_create. */
  volCreate(poolName: string, name: string, size: number): Promise<void> {
    return this.withVolumes(poolName, [name], async () => {
      const pool = this.pool(poolName);
      this.checkNameFree(pool, name);
      if (!(await pool.get(name))) this.checkNoLeftoverExports(poolName, name);
      await pool.create(name, size);
    });
  }

  private checkNameFree(pool: BlockPool, name: string): void {
    if (this.reserved.has(`${pool.name}/${name}`)) {
      throw new TargetdError(
        ErrorCode.NAME_CONFLICT,
        `volume '${name}' is being created by a copy in progress`,
      );
    }
  }

  /**
   * Refuses a new volume whose name still has exports or access-group maps in the registry: they belong to
   * a volume that went missing (its file removed behind our back, a pool path changed), and a new volume
   * must never inherit them, and with them another host's access to its data.
   */
  private checkNoLeftoverExports(pool: string, name: string): void {
    const { e, m } = registryUses(this.store.peek(), pool, name);
    if (!e && !m) return;
    const what = e
      ? `an export to ${e.initiator_wwn} (LUN ${e.lun}); remove it with export_destroy`
      : `a map to access group '${m!.ag_name}' (LUN ${m!.h_lun_id}); remove it with access_group_map_destroy`;
    throw new TargetdError(
      ErrorCode.NAME_CONFLICT,
      `name '${name}' in pool '${pool}' still has ${what} (left from a volume of that name that is missing) before reusing the name`,
    );
  }

  /** Refuses while the volume is exported, mapped to an access group, or part of a running copy. */
  private checkNotInUse(state: Readonly<State>, pool: string, name: string): void {
    const { e, m } = registryUses(state, pool, name);
    if (e) {
      throw new TargetdError(
        ErrorCode.VOLUME_MASKED,
        `volume '${name}' is exported to ${e.initiator_wwn} (LUN ${e.lun}); remove the export first`,
      );
    }
    if (m) {
      throw new TargetdError(
        ErrorCode.VOLUME_MASKED,
        `volume '${name}' is mapped to access group '${m.ag_name}' (LUN ${m.h_lun_id}); remove the mapping first`,
      );
    }
    const j = this.jobs.findByVolume(pool, name);
    if (j) {
      throw new TargetdError(
        ErrorCode.VOLUME_MASKED,
        `volume '${name}' is in use by a copy in progress (async id ${j.id})`,
      );
    }
  }

  /** vol_destroy. */
  volDestroy(poolName: string, name: string): Promise<void> {
    return this.withVolumes(poolName, [name], async () => {
      const pool = this.pool(poolName);
      const v = await this.volume(pool, name);
      this.checkNotInUse(this.store.peek(), poolName, name);
      if (this.backend.isBusy?.(poolName, name)) {
        throw new TargetdError(
          ErrorCode.VOLUME_MASKED,
          `volume '${name}' is still open in the iSCSI data plane`,
        );
      }
      await pool.destroy(name);
      // The volume is gone either way: leftovers of it in the data plane are only clutter, never an error.
      await this.backend.volumeDestroyed?.(v.uuid).catch((err: unknown) => {
        this.log.warn(
          { err, pool: poolName, name, uuid: v.uuid },
          'data-plane state of a destroyed volume kept',
        );
      });
    });
  }

  /** vol_resize: grow only. */
  volResize(poolName: string, name: string, size: number): Promise<void> {
    return this.withVolumes(poolName, [name], async () => {
      const pool = this.pool(poolName);
      const v = await this.volume(pool, name);
      if (size <= v.size) {
        throw invalidParam(
          'size',
          `${size} is not larger than the current size ${v.size}; volumes only grow`,
        );
      }
      const j = this.jobs.findByVolume(poolName, name);
      if (j)
        throw new TargetdError(
          ErrorCode.VOLUME_MASKED,
          `volume '${name}' is in use by a copy in progress (async id ${j.id})`,
        );
      await pool.resize(name, size);
      if (this.isExported(poolName, name)) await this.exclusive(() => this.applyExports());
    });
  }

  private isExported(pool: string, vol: string): boolean {
    const s = this.store.peek();
    return (
      s.exports.some((e) => e.pool === pool && e.vol === vol) ||
      s.ag_maps.some((m) => m.pool === pool && m.vol === vol)
    );
  }

  /**
   * vol_copy: null when done within `async_after` seconds (reflink copies always), else a TargetdError whose
   * positive code is the async id, while the copy runs on.
   */
  async volCopy(poolName: string, src: string, dst: string, size: number | undefined): Promise<void> {
    const { id, done, instant } = await this.withVolumes(poolName, [src, dst], async () => {
      const pool = this.pool(poolName);
      const orig = await this.volume(pool, src);
      if (await pool.get(dst))
        throw new TargetdError(
          ErrorCode.NAME_CONFLICT,
          `volume '${dst}' already exists in pool '${poolName}'`,
        );
      this.checkNameFree(pool, dst);
      this.checkNoLeftoverExports(poolName, dst);
      if (size !== undefined && size <= orig.size) {
        throw invalidParam(
          'size',
          `${size} is not larger than the size of '${src}' (${orig.size}); a copy can only grow`,
        );
      }
      const running = this.jobs.findByVolume(poolName, src);
      if (running && running.dst === src) {
        throw new TargetdError(ErrorCode.NOT_FOUND_VOLUME, `volume '${src}' not found in pool '${poolName}'`);
      }
      const id = await this.exclusive(async () => {
        const state = this.store.get();
        const id = state.next_async_id;
        state.next_async_id = id + 1;
        state.jobs[String(id)] = { pool: poolName, src, dst, started: new Date().toISOString() };
        await this.store.save(state);
        return id;
      });
      const instant = await pool.canCloneInstantly(src);
      return { id, instant, done: this.runCopy(id, pool, src, dst, size) };
    });

    const wait = this.opts.asyncAfter;
    let outcome: { error?: TargetdError } | undefined;
    const settled = done.then((r) => (outcome = r));
    if (instant || wait < 0) {
      await settled;
    } else if (wait === 0) {
      await new Promise((r) => setImmediate(r));
    } else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise((r) => (timer = setTimeout(r, wait * 1000)))]);
      clearTimeout(timer);
    }
    if (outcome) {
      if (outcome.error) throw outcome.error;
      return;
    }
    // From here on the client knows the id: a failure must be reported by async_list.
    this.announced.add(id);
    throw new TargetdError(id, `vol_copy is running asynchronously; async id ${id}`);
  }

  private readonly announced = new Set<number>();

  /** Runs one copy to its end; resolves with the error (if any) rather than rejecting. */
  private runCopy(
    id: number,
    pool: BlockPool,
    src: string,
    dst: string,
    size: number | undefined,
  ): Promise<{ error?: TargetdError }> {
    const key = `${pool.name}/${dst}`;
    this.reserved.add(key);
    const abort = new AbortController();
    let resolveSettled!: () => void;
    const job = {
      id,
      pool: pool.name,
      src,
      dst,
      percent: 0,
      abort,
      settled: new Promise<void>((r) => {
        resolveSettled = r;
      }),
    };
    this.jobs.add(job);
    const t0 = Date.now();
    let answer!: (outcome: { error?: TargetdError }) => void;
    const answered = new Promise<{ error?: TargetdError }>((r) => {
      answer = r;
    });
    void (async () => {
      let error: TargetdError | undefined;
      try {
        await pool.copy(
          src,
          dst,
          size,
          (f) => {
            job.percent = Math.max(job.percent, Math.min(99, Math.floor(f * 100)));
          },
          abort.signal,
        );
      } catch (e) {
        error =
          e instanceof TargetdError
            ? e
            : new TargetdError(
                ErrorCode.INVALID,
                `copy failed: ${(e as Error).name}: ${(e as Error).message}`,
              );
      }
      try {
        await this.exclusive(async () => {
          const state = this.store.get();
          delete state.jobs[String(id)];
          if (error && this.announced.has(id)) {
            state.failed_jobs[String(id)] = {
              code: error.code,
              message: error.message,
              percent: job.percent,
            };
          }
          this.jobs.remove(id);
          this.reserved.delete(key);
          this.announced.delete(id);
          // The job is over in memory, so its caller may have the outcome now; the journal's update holds the
          // registry lock but not that answer. A crash before it is durable leaves the job journaled with
          // its target listed (reported as completed at start-up) or not (reported as failed), as answered.
          answer({ error });
          await this.store.save(state);
        });
      } catch (e) {
        this.log.error({ async_id: id, err: (e as Error).message }, 'could not record the end of a copy');
        answer({ error });
      }
      this.log.info(
        { async_id: id, pool: pool.name, src, dst, outcome: error ? error.code : 'ok', ms: Date.now() - t0 },
        'vol_copy finished',
      );
      resolveSettled();
    })();
    return answered;
  }

  /** async_list: running jobs as [0, percent]; failures once as [code, percent], then gone. */
  asyncList(): Promise<Record<string, [number, number]>> {
    return this.exclusive(async () => {
      const out: Record<string, [number, number]> = {};
      for (const j of this.jobs.all()) if (this.announced.has(j.id)) out[String(j.id)] = [0, j.percent];
      const state = this.store.get();
      const failed = Object.entries(state.failed_jobs);
      if (failed.length > 0) {
        for (const [id, f] of failed) out[id] = [f.code, f.percent];
        state.failed_jobs = {};
        await this.store.save(state);
      }
      return out;
    });
  }

  // ---- exports ----

  /** export_list: direct exports and access-group maps expanded per member. */
  async exportList(): Promise<ExportListEntry[]> {
    const s = this.store.peek();
    const rows: { iqn: string; lun: number; pool: string; vol: string }[] = s.exports.map((e) => ({
      iqn: e.initiator_wwn,
      lun: e.lun,
      pool: e.pool,
      vol: e.vol,
    }));
    for (const m of s.ag_maps) {
      for (const iqn of members(s, m.ag_name)) rows.push({ iqn, lun: m.h_lun_id, pool: m.pool, vol: m.vol });
    }
    const out: ExportListEntry[] = [];
    for (const r of rows) {
      const v = await this.pools.get(r.pool)?.get(r.vol);
      out.push({
        initiator_wwn: r.iqn,
        lun: r.lun,
        pool: r.pool,
        vol_name: r.vol,
        vol_size: v?.size ?? 0,
        vol_uuid: v?.uuid ?? '',
        vol: r.vol,
      });
    }
    return out;
  }

  private groupOf(state: Readonly<State>, iqn: string): string | undefined {
    return state.access_groups.find((g) => g.init_ids.includes(iqn))?.name;
  }

  /** export_create: the same export again is a no-op; a LUN or volume clash is refused with nothing changed. */
  exportCreate(poolName: string, vol: string, iqn: string, lun: number): Promise<void> {
    const pool = this.pool(poolName);
    return this.withVolumes(poolName, [vol], async () => {
      await this.volume(pool, vol);
      // No export may refer to a volume whose data could still be torn by a power cut (a fresh copy's).
      await pool.whenDurable?.(vol);
      await this.exclusive(() => this.addExport(poolName, vol, iqn, lun));
    });
  }

  private async addExport(poolName: string, vol: string, iqn: string, lun: number): Promise<void> {
    const state = this.store.get();
    const group = this.groupOf(state, iqn);
    if (group) {
      throw new TargetdError(
        ErrorCode.EXISTS_INITIATOR,
        `initiator ${iqn} belongs to access group '${group}'; map the volume to the group instead`,
      );
    }
    const mine = state.exports.filter((e) => e.initiator_wwn === iqn);
    const same = mine.find((e) => e.lun === lun && e.pool === poolName && e.vol === vol);
    if (same) return;
    const lunTaken = mine.find((e) => e.lun === lun);
    if (lunTaken) {
      throw invalidParam('lun', `LUN ${lun} of ${iqn} is already mapped to ${lunTaken.pool}/${lunTaken.vol}`);
    }
    const volTaken = mine.find((e) => e.pool === poolName && e.vol === vol);
    if (volTaken) {
      throw invalidParam('lun', `volume '${vol}' is already exported to ${iqn} as LUN ${volTaken.lun}`);
    }
    if (this.jobs.findByVolume(poolName, vol)?.dst === vol) {
      throw new TargetdError(ErrorCode.NOT_FOUND_VOLUME, `volume '${vol}' not found in pool '${poolName}'`);
    }
    state.exports.push({ initiator_wwn: iqn, lun, pool: poolName, vol });
    await this.commitExports(state);
  }

  /** export_destroy. */
  exportDestroy(poolName: string, vol: string, iqn: string): Promise<void> {
    return this.exclusive(async () => {
      this.pool(poolName);
      const state = this.store.get();
      const i = state.exports.findIndex(
        (e) => e.initiator_wwn === iqn && e.pool === poolName && e.vol === vol,
      );
      if (i < 0) {
        throw new TargetdError(
          ErrorCode.NOT_FOUND_VOLUME_EXPORT,
          `volume '${vol}' of pool '${poolName}' is not exported to ${iqn}`,
        );
      }
      state.exports.splice(i, 1);
      await this.commitExports(state);
    });
  }

  /** initiator_set_auth: null or "" in either half of a direction turns that direction off. */
  initiatorSetAuth(iqn: string, auth: ChapState): Promise<void> {
    return this.exclusive(async () => {
      const norm = (u: string | null, p: string | null): [string | null, string | null] =>
        u && p ? [u, p] : [null, null];
      const [in_user, in_pass] = norm(auth.in_user, auth.in_pass);
      const [out_user, out_pass] = norm(auth.out_user, auth.out_pass);
      for (const [field, secret] of [
        ['in_pass', in_pass],
        ['out_pass', out_pass],
      ] as const) {
        // Windows and other initiators refuse CHAP secrets shorter than 12 characters.
        if (secret && secret.length < 12) {
          this.log.warn(
            { initiator: iqn, field },
            `${field} for ${iqn} is shorter than 12 characters; many initiators refuse it`,
          );
        }
      }
      if (out_user && !in_user) {
        throw invalidParam('out_user', 'mutual CHAP (out_user/out_pass) needs in_user/in_pass as well');
      }
      const state = this.store.get();
      if (in_user) state.auth[iqn] = { in_user, in_pass, out_user, out_pass };
      else delete state.auth[iqn];
      await this.commitExports(state);
    });
  }

  /** initiator_list: every initiator the registry knows (exports, CHAP, groups); standalone_only drops group members. */
  async initiatorList(standaloneOnly: boolean): Promise<{ init_id: string; init_type: 'iscsi' }[]> {
    const s = this.store.peek();
    const grouped = new Set(s.access_groups.flatMap((g) => g.init_ids));
    const all = new Set<string>([...s.exports.map((e) => e.initiator_wwn), ...Object.keys(s.auth)]);
    if (!standaloneOnly) for (const i of grouped) all.add(i);
    return [...all]
      .filter((i) => !(standaloneOnly && grouped.has(i)))
      .sort()
      .map((init_id) => ({ init_id, init_type: 'iscsi' as const }));
  }

  // ---- access groups ----

  /** access_group_list. */
  async accessGroupList(): Promise<{ name: string; init_ids: string[]; init_type: 'iscsi' }[]> {
    return [...this.store.peek().access_groups]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((g) => ({ name: g.name, init_ids: [...g.init_ids], init_type: 'iscsi' as const }));
  }

  /** Refuses an initiator that already has direct exports or another group. */
  private checkInitiatorFree(state: State, iqn: string, group: string): void {
    const other = this.groupOf(state, iqn);
    if (other && other !== group) {
      throw new TargetdError(
        ErrorCode.EXISTS_INITIATOR,
        `initiator ${iqn} already belongs to access group '${other}'`,
      );
    }
    if (state.exports.some((e) => e.initiator_wwn === iqn)) {
      throw new TargetdError(
        ErrorCode.EXISTS_INITIATOR,
        `initiator ${iqn} already has direct exports; remove them first`,
      );
    }
  }

  /** access_group_create. */
  accessGroupCreate(name: string, iqn: string): Promise<void> {
    return this.exclusive(async () => {
      const state = this.store.get();
      if (findGroup(state, name)) {
        throw new TargetdError(ErrorCode.NAME_CONFLICT, `access group '${name}' already exists`);
      }
      this.checkInitiatorFree(state, iqn, name);
      state.access_groups.push({ name, init_ids: [iqn] });
      await this.commitExports(state);
    });
  }

  /** access_group_destroy: silent when missing; the group's maps go with it. */
  accessGroupDestroy(name: string): Promise<void> {
    return this.exclusive(async () => {
      const state = this.store.get();
      if (!findGroup(state, name)) return;
      removeGroup(state, name);
      await this.commitExports(state);
    });
  }

  /** access_group_init_add: creates the group when missing. */
  accessGroupInitAdd(name: string, iqn: string): Promise<void> {
    return this.exclusive(async () => {
      const state = this.store.get();
      const group = findGroup(state, name);
      if (group?.init_ids.includes(iqn)) return;
      this.checkInitiatorFree(state, iqn, name);
      if (group) group.init_ids.push(iqn);
      else state.access_groups.push({ name, init_ids: [iqn] });
      await this.commitExports(state);
    });
  }

  /** access_group_init_del: silent when missing; a group left empty is removed with its maps. */
  accessGroupInitDel(name: string, iqn: string): Promise<void> {
    return this.exclusive(async () => {
      const state = this.store.get();
      const group = findGroup(state, name);
      if (!group?.init_ids.includes(iqn)) return;
      group.init_ids = group.init_ids.filter((m) => m !== iqn);
      if (group.init_ids.length === 0) removeGroup(state, name);
      await this.commitExports(state);
    });
  }

  /** access_group_map_list. */
  async accessGroupMapList(): Promise<
    { ag_name: string; h_lun_id: number; pool_name: string; vol_name: string }[]
  > {
    return this.store
      .peek()
      .ag_maps.map((m) => ({ ag_name: m.ag_name, h_lun_id: m.h_lun_id, pool_name: m.pool, vol_name: m.vol }));
  }

  /** access_group_map_create: picks the lowest free LUN when none is given. */
  accessGroupMapCreate(poolName: string, vol: string, group: string, lun: number | undefined): Promise<void> {
    if (!findGroup(this.store.peek(), group)) {
      return Promise.reject(
        new TargetdError(ErrorCode.NOT_FOUND_ACCESS_GROUP, `access group '${group}' does not exist`),
      );
    }
    const pool = this.pool(poolName);
    return this.withVolumes(poolName, [vol], async () => {
      await this.volume(pool, vol);
      await pool.whenDurable?.(vol);
      await this.exclusive(() => this.addGroupMap(poolName, vol, group, lun));
    });
  }

  private async addGroupMap(
    poolName: string,
    vol: string,
    group: string,
    lun: number | undefined,
  ): Promise<void> {
    const state = this.store.get();
    if (!findGroup(state, group)) {
      throw new TargetdError(ErrorCode.NOT_FOUND_ACCESS_GROUP, `access group '${group}' does not exist`);
    }
    if (this.jobs.findByVolume(poolName, vol)?.dst === vol) {
      throw new TargetdError(ErrorCode.NOT_FOUND_VOLUME, `volume '${vol}' not found in pool '${poolName}'`);
    }
    const mine = state.ag_maps.filter((m) => m.ag_name === group);
    const existing = mine.find((m) => m.pool === poolName && m.vol === vol);
    if (existing) {
      if (lun === undefined || lun === existing.h_lun_id) return;
      throw invalidParam(
        'h_lun_id',
        `volume '${vol}' is already mapped to '${group}' as LUN ${existing.h_lun_id}`,
      );
    }
    const used = new Set(mine.map((m) => m.h_lun_id));
    if (lun === undefined) {
      let free = 0;
      while (free <= MAX_LUN && used.has(free)) free++;
      if (free > MAX_LUN) {
        throw new TargetdError(
          ErrorCode.NO_FREE_HOST_LUN_ID,
          `access group '${group}' has no free LUN (0-${MAX_LUN})`,
        );
      }
      lun = free;
    } else if (used.has(lun)) {
      const m = mine.find((x) => x.h_lun_id === lun)!;
      throw invalidParam(
        'h_lun_id',
        `LUN ${lun} of access group '${group}' is already mapped to ${m.pool}/${m.vol}`,
      );
    }
    const entry: AgMap = { ag_name: group, h_lun_id: lun, pool: poolName, vol };
    state.ag_maps.push(entry);
    await this.commitExports(state);
  }

  /** access_group_map_destroy: silent when there is no such mapping. */
  accessGroupMapDestroy(poolName: string, vol: string, group: string): Promise<void> {
    return this.exclusive(async () => {
      const state = this.store.get();
      const before = state.ag_maps.length;
      state.ag_maps = state.ag_maps.filter(
        (m) => !(m.ag_name === group && m.pool === poolName && m.vol === vol),
      );
      if (state.ag_maps.length === before) return;
      await this.commitExports(state);
    });
  }

  // ---- data plane ----

  /** Saves a registry change, then brings the data plane in line (the store is the truth). */
  private async commitExports(state: State): Promise<void> {
    await this.store.save(state);
    await this.applyExports();
  }

  /** The desired data-plane state: per initiator, its LUNs (direct or through its group) and CHAP. */
  async desiredExports(): Promise<DesiredExports> {
    const s = this.store.peek();
    const views = new Map<string, InitiatorView>();
    const view = (iqn: string): InitiatorView => {
      let v = views.get(iqn);
      if (!v) {
        v = { iqn, luns: [], auth: s.auth[iqn] ?? null };
        views.set(iqn, v);
      }
      return v;
    };
    const resolve = async (pool: string, vol: string, lun: number): Promise<LunMapping | undefined> => {
      const p = this.pools.get(pool);
      const v = await p?.get(vol);
      if (!p || !v) {
        this.log.error({ pool, vol }, 'exported volume is missing from its pool; not served');
        return undefined;
      }
      return { lun, pool, vol, uuid: v.uuid, size: v.size, path: p.dataPath(vol) };
    };
    for (const e of s.exports as ExportEntry[]) {
      const m = await resolve(e.pool, e.vol, e.lun);
      if (m) view(e.initiator_wwn).luns.push(m);
    }
    for (const m of s.ag_maps) {
      for (const iqn of members(s, m.ag_name)) {
        const r = await resolve(m.pool, m.vol, m.h_lun_id);
        if (r) view(iqn).luns.push(r);
      }
    }
    for (const iqn of Object.keys(s.auth)) view(iqn);
    for (const v of views.values()) v.luns.sort((a, b) => a.lun - b.lun);
    return { targetName: this.opts.targetName, initiators: [...views.values()] };
  }

  private async applyExports(): Promise<void> {
    await this.backend.apply(await this.desiredExports());
  }
}
