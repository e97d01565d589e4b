import type { LogicalUnit } from '../lu/logical-unit.js';
import type {
  CommandContext,
  CommandSpec,
  CopyOutcome,
  LunlessContext,
  Reply,
  TargetServices,
} from './command.js';
import { lookup } from './commands.js';
import {
  Asc,
  type AscPair,
  Op,
  SenseKey,
  Status,
  TaskManagementFunction,
  TaskManagementResponse,
} from './constants.js';
import {
  checkCondition,
  fixedSense,
  invalidField,
  invalidOpcode,
  reservationConflict,
  ScsiError,
} from './sense.js';
import type { ExecuteOptions, ItNexus, ScsiResult } from './types.js';

/** Minimal logger surface (pino's), so the SCSI layer can report unexpected failures. */
export interface ScsiLogger {
  warn(obj: object, msg: string): void;
}

export interface ScsiTargetOptions {
  /** RELATIVE TARGET PORT IDENTIFIER of our one target port (VPD 0x83, READ FULL STATUS). */
  relativeTargetPort?: number;
  /** Target port group (VPD 0x83, REPORT TARGET PORT GROUPS); also the iSCSI TPGT. */
  targetPortGroup?: number;
  /** iSCSI target name, reported as SCSI name string designators. */
  targetName?: string;
  logger?: ScsiLogger;
}

/** Most unit attentions kept per nexus and LUN; older ones beyond this are dropped (newest kept). */
const MAX_PENDING_UAS = 16;
const EMPTY = Buffer.alloc(0);

interface TaskRecord {
  nexus: NexusState;
  lun: number;
  lu: LogicalUnit | undefined;
  tag: number | undefined;
  aborted: boolean;
  finished: boolean;
  /** Created only when something waits for the task (task management), not for every command. */
  done: Promise<void> | undefined;
  settle: (() => void) | undefined;
}

/** Resolves once the task has finished executing. */
function whenDone(t: TaskRecord): Promise<void> {
  if (t.finished) return Promise.resolve();
  t.done ??= new Promise<void>((resolve) => {
    t.settle = resolve;
  });
  return t.done;
}

interface NexusState {
  key: string;
  initiator: string;
  /** Pending unit attentions per LUN; a LUN without an entry was never addressed (owes POWER ON). */
  uas: Map<number, AscPair[]>;
  tasks: Set<TaskRecord>;
  /** EXTENDED COPY outcomes kept for RECEIVE COPY RESULTS, by list identifier (oldest first). */
  copies: Map<number, CopyOutcome>;
}

/** Most EXTENDED COPY outcomes remembered per nexus. */
const MAX_COPY_OUTCOMES = 16;

/** The initiator-port key of a nexus: lower-cased name, ",i,0x", 12 hex digits of ISID. */
export function nexusKey(nexus: ItNexus): string {
  const isid =
    typeof nexus.isid === 'string'
      ? nexus.isid.toLowerCase().replace(/^0x/, '')
      : BigInt(nexus.isid).toString(16);
  return `${nexus.initiator.toLowerCase()},i,0x${isid.padStart(12, '0')}`;
}

function pushUa(queue: AscPair[], asc: AscPair): void {
  if (queue.some((a) => a[0] === asc[0] && a[1] === asc[1])) return;
  queue.push(asc);
  if (queue.length > MAX_PENDING_UAS) queue.shift();
}

function result(status: number, reply?: Reply, sense?: Buffer, expectedLength = 0): ScsiResult {
  if (!reply) {
    const r: ScsiResult = { status, data: [], dataLength: 0, transferLength: 0 };
    if (sense) r.sense = sense;
    return r;
  }
  // Data-In never exceeds what the initiator said it would accept.
  const data: Buffer[] = [];
  let left = expectedLength;
  for (const b of reply.data ?? []) {
    if (left <= 0) break;
    const piece = b.length <= left ? b : b.subarray(0, left);
    data.push(piece);
    left -= piece.length;
  }
  const dataLength = expectedLength - left;
  const r: ScsiResult = { status, data, dataLength, transferLength: reply.transferLength };
  if (sense) r.sense = sense;
  return r;
}

function checkConditionResult(err: ScsiError): ScsiResult {
  const sense = err.sense();
  return result(err.status, undefined, sense);
}

/**
 * The SCSI target: routes each command of an I_T nexus to the logical unit its initiator's LUN map names,
 * keeps unit attentions per nexus and LUN, enforces reservations, and runs task management.
 * Transport-independent: the iSCSI session layer feeds it CDBs and Data-Out and sends back what it returns.
 */
export class ScsiTarget implements TargetServices {
  readonly relativeTargetPort: number;
  readonly targetPortGroup: number;
  readonly targetName: string | undefined;
  private readonly logger: ScsiLogger | undefined;
  private readonly lunMaps = new Map<string, Map<number, LogicalUnit>>();
  private readonly nexuses = new Map<string, NexusState>();
  /** The state last found for a nexus object, so the per-command lookup needs no nexusKey() string building. */
  private readonly nexusCache = new WeakMap<ItNexus, NexusState>();

  constructor(opts: ScsiTargetOptions = {}) {
    this.relativeTargetPort = opts.relativeTargetPort ?? 1;
    this.targetPortGroup = opts.targetPortGroup ?? 1;
    this.targetName = opts.targetName;
    this.logger = opts.logger;
  }

  /**
   * Sets (replaces) the LUNs an initiator may reach. Existing nexuses of that initiator get REPORTED LUNS
   * DATA HAS CHANGED when anything differs.
   */
  setLunMap(initiator: string, luns: ReadonlyMap<number, LogicalUnit>): void {
    const name = initiator.toLowerCase();
    const old = this.lunMaps.get(name);
    const next = new Map(luns);
    if (next.size === 0) this.lunMaps.delete(name);
    else this.lunMaps.set(name, next);
    if (old && sameMap(old, next)) return;
    if (!old && next.size === 0) return;
    for (const st of this.nexuses.values()) {
      if (st.initiator !== name) continue;
      for (const queue of st.uas.values()) pushUa(queue, Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
    }
  }

  /** The LUN map of an initiator (empty when it has none). */
  lunMap(initiator: string): ReadonlyMap<number, LogicalUnit> {
    return this.lunMaps.get(initiator.toLowerCase()) ?? new Map();
  }

  /** Registers a new I_T nexus; its first command to each LUN reports POWER ON, RESET (29/00). */
  nexusOpened(nexus: ItNexus): void {
    const key = nexusKey(nexus);
    if (this.nexuses.has(key)) this.dropNexus(this.nexuses.get(key)!);
    this.nexuses.set(key, {
      key,
      initiator: nexus.initiator.toLowerCase(),
      uas: new Map(),
      tasks: new Set(),
      copies: new Map(),
    });
  }

  /**
   * Forgets an I_T nexus (logout, connection loss, session reinstatement): its outstanding commands are
   * marked aborted and its SCSI-2 reservations released. Persistent reservations stay, as SPC requires.
   */
  nexusClosed(nexus: ItNexus): void {
    const st = this.nexuses.get(nexusKey(nexus));
    if (st) this.dropNexus(st);
  }

  /** Whether any command on `lu` is still running (e.g. after its LUN was unmapped). */
  busy(lu: LogicalUnit): boolean {
    return this.tasksOn(lu).length > 0;
  }

  /** Re-reads `lu`'s size and tells every nexus using it CAPACITY DATA HAS CHANGED (2A/09). */
  async capacityChanged(lu: LogicalUnit): Promise<void> {
    await lu.backing.refreshSize?.();
    this.unitAttentionForLu(lu, Asc.CAPACITY_DATA_HAS_CHANGED);
  }

  /**
   * Runs one SCSI command. Never throws: every failure becomes a status (and sense).
   * `cdb` is the CDB as received (16 bytes from the BHS is fine; longer ones include the AHS part);
   * `dataOut` the whole reassembled Data-Out (at most `expectedLength` bytes), as one buffer or as the list
   * of buffers it arrived in (WRITE hands those to writev; other commands get them joined); `expectedLength` the iSCSI
   * Expected Data Transfer Length. The transport sends `result.data` as Data-In, sends no response at all
   * when `result.aborted`, and reports the residual `expectedLength - result.transferLength`.
   */
  async execute(
    nexus: ItNexus,
    lun: number,
    cdb: Buffer,
    dataOut: Buffer | readonly Buffer[] = EMPTY,
    expectedLength = 0,
    opts: ExecuteOptions = {},
  ): Promise<ScsiResult> {
    const st = this.stateOf(nexus);
    const lu = this.lunMaps.get(st.initiator)?.get(lun);
    const task: TaskRecord = {
      nexus: st,
      lun,
      lu,
      tag: opts.taskTag,
      aborted: false,
      finished: false,
      done: undefined,
      settle: undefined,
    };
    st.tasks.add(task);
    try {
      const res = await this.run(st, lun, lu, cdb, dataOut, expectedLength, task);
      if (task.aborted) res.aborted = true;
      return res;
    } finally {
      st.tasks.delete(task);
      task.finished = true;
      task.settle?.();
    }
  }

  /**
   * Runs a task management function for `nexus` and resolves with the iSCSI TMF response code once the
   * affected commands have finished (so no aborted write lands after the response).
   */
  async taskManagement(nexus: ItNexus, fn: number, lun: number, refTaskTag?: number): Promise<number> {
    const st = this.stateOf(nexus);
    const lu = this.lunMaps.get(st.initiator)?.get(lun);
    switch (fn) {
      case TaskManagementFunction.ABORT_TASK: {
        const victims = [...st.tasks].filter((t) => t.tag === refTaskTag && t.lun === lun);
        if (victims.length === 0) return TaskManagementResponse.TASK_DOES_NOT_EXIST;
        await abortAll(victims);
        return TaskManagementResponse.FUNCTION_COMPLETE;
      }
      case TaskManagementFunction.ABORT_TASK_SET:
        await abortAll([...st.tasks].filter((t) => t.lun === lun));
        return TaskManagementResponse.FUNCTION_COMPLETE;
      case TaskManagementFunction.CLEAR_TASK_SET: {
        if (!lu) return TaskManagementResponse.LUN_DOES_NOT_EXIST;
        const victims = this.tasksOn(lu);
        const others = new Set(victims.filter((t) => t.nexus !== st).map((t) => t.nexus.key));
        await abortAll(victims);
        this.unitAttentionForNexuses(lu, others, Asc.COMMANDS_CLEARED_BY_ANOTHER_INITIATOR);
        return TaskManagementResponse.FUNCTION_COMPLETE;
      }
      case TaskManagementFunction.LOGICAL_UNIT_RESET:
        if (!lu) return TaskManagementResponse.LUN_DOES_NOT_EXIST;
        await this.resetLu(lu, Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED);
        return TaskManagementResponse.FUNCTION_COMPLETE;
      case TaskManagementFunction.TARGET_WARM_RESET:
      case TaskManagementFunction.TARGET_COLD_RESET: {
        const asc =
          fn === TaskManagementFunction.TARGET_COLD_RESET
            ? Asc.POWER_ON_OCCURRED
            : Asc.SCSI_BUS_RESET_OCCURRED;
        // Only the LUs known to the issuing initiator (RFC 7143 §11.5.1): LUN masking must keep another
        // initiator's volumes out of reach of this one's resets too.
        await Promise.all(this.lusOf(st.key).map((l) => this.resetLu(l, asc)));
        return TaskManagementResponse.FUNCTION_COMPLETE;
      }
      case TaskManagementFunction.TASK_REASSIGN:
        return TaskManagementResponse.TASK_REASSIGNMENT_NOT_SUPPORTED;
      default:
        return TaskManagementResponse.FUNCTION_NOT_SUPPORTED;
    }
  }

  // ---- TargetServices (used by command handlers) ----

  lunsOf(key: string): number[] {
    const st = this.nexuses.get(key);
    const map = st ? this.lunMaps.get(st.initiator) : undefined;
    return map ? [...map.keys()].sort((a, b) => a - b) : [];
  }

  /**
   * Whether a TARGET COLD RESET from `issuer` ends `other`'s session: same initiator, or an LU both reach.
   * LUN masking makes one target many disjoint ones; a reset must not cross into a set the issuer cannot
   * see, just as its LU resets do not (RFC 7143 §11.5.1 scopes resets to the LUs known to the issuer).
   */
  coldResetReaches(issuer: ItNexus, other: ItNexus): boolean {
    if (issuer.initiator.toLowerCase() === other.initiator.toLowerCase()) return true;
    const mine = new Set(this.lusOf(nexusKey(issuer)));
    return this.lusOf(nexusKey(other)).some((lu) => mine.has(lu));
  }

  lusOf(key: string): LogicalUnit[] {
    const st = this.nexuses.get(key);
    const map = st ? this.lunMaps.get(st.initiator) : undefined;
    return map ? [...new Set(map.values())] : [];
  }

  recordCopy(key: string, listId: number, outcome: CopyOutcome): void {
    const st = this.nexuses.get(key);
    if (!st) return;
    st.copies.delete(listId);
    st.copies.set(listId, outcome);
    if (st.copies.size > MAX_COPY_OUTCOMES) st.copies.delete(st.copies.keys().next().value!);
  }

  copyOutcome(key: string, listId: number): CopyOutcome | undefined {
    return this.nexuses.get(key)?.copies.get(listId);
  }

  takeUnitAttention(key: string, lun: number): AscPair | undefined {
    const st = this.nexuses.get(key);
    if (!st) return undefined;
    return this.pendingUas(st, lun).shift();
  }

  unitAttentionForLu(lu: LogicalUnit, asc: AscPair, exceptNexusKey?: string): void {
    for (const st of this.nexuses.values()) {
      if (st.key === exceptNexusKey) continue;
      this.queueOnLu(st, lu, asc);
    }
  }

  unitAttentionForNexuses(lu: LogicalUnit, keys: Iterable<string>, asc: AscPair): void {
    for (const key of keys) {
      const st = this.nexuses.get(key);
      if (st) this.queueOnLu(st, lu, asc);
    }
  }

  async abortTasksOf(lu: LogicalUnit, keys: Iterable<string>, exceptTask: unknown): Promise<void> {
    const set = new Set(keys);
    await abortAll(this.tasksOn(lu).filter((t) => set.has(t.nexus.key) && t !== exceptTask));
  }

  // ---- internals ----

  private stateOf(nexus: ItNexus): NexusState {
    const cached = this.nexusCache.get(nexus);
    // Still the registered state of its key (not dropped or replaced since): the common, per-command case.
    // The cache is keyed by object identity, so a nexus object must not be mutated (the session layer never does).
    if (cached !== undefined && this.nexuses.get(cached.key) === cached) return cached;
    const key = nexusKey(nexus);
    let st = this.nexuses.get(key);
    if (!st) {
      // A transport that forgot nexusOpened still gets correct behaviour.
      this.nexusOpened(nexus);
      st = this.nexuses.get(key)!;
    }
    this.nexusCache.set(nexus, st);
    return st;
  }

  private dropNexus(st: NexusState): void {
    for (const t of st.tasks) t.aborted = true;
    for (const lu of this.allLus()) {
      if (lu.scsi2Holder === st.key) lu.scsi2Holder = null;
    }
    this.nexuses.delete(st.key);
  }

  private pendingUas(st: NexusState, lun: number): AscPair[] {
    let q = st.uas.get(lun);
    if (!q) {
      q = [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET];
      st.uas.set(lun, q);
    }
    return q;
  }

  private queueOnLu(st: NexusState, lu: LogicalUnit, asc: AscPair): void {
    const map = this.lunMaps.get(st.initiator);
    if (!map) return;
    for (const [lun, l] of map) {
      if (l !== lu) continue;
      // A LUN never addressed still owes POWER ON, which subsumes anything newer.
      const q = st.uas.get(lun);
      if (q) pushUa(q, asc);
    }
  }

  private allLus(): LogicalUnit[] {
    const set = new Set<LogicalUnit>();
    for (const m of this.lunMaps.values()) for (const lu of m.values()) set.add(lu);
    return [...set];
  }

  private tasksOn(lu: LogicalUnit): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (const st of this.nexuses.values()) for (const t of st.tasks) if (t.lu === lu) out.push(t);
    return out;
  }

  /** Aborts everything on `lu`, drops its SCSI-2 reservation and mode changes; every nexus (the issuer too) gets `asc`. */
  private async resetLu(lu: LogicalUnit, asc: AscPair): Promise<void> {
    await abortAll(this.tasksOn(lu));
    lu.scsi2Holder = null;
    // Mode parameters cannot be saved, so a reset returns them to their defaults.
    lu.writeCacheEnabled = true;
    lu.softwareWriteProtect = false;
    this.unitAttentionForLu(lu, asc);
  }

  private async run(
    st: NexusState,
    lun: number,
    lu: LogicalUnit | undefined,
    rawCdb: Buffer,
    dataOut: Buffer | readonly Buffer[],
    expectedLength: number,
    task: TaskRecord,
  ): Promise<ScsiResult> {
    if (rawCdb.length === 0) return checkConditionResult(invalidOpcode());
    const spec = lookup(rawCdb, lu);
    const cdb =
      typeof spec === 'object' && rawCdb.length < spec.cdbLength
        ? Buffer.concat([rawCdb, Buffer.alloc(spec.cdbLength - rawCdb.length)])
        : rawCdb;
    const base: LunlessContext = Buffer.isBuffer(dataOut)
      ? {
          services: this,
          nexusKey: st.key,
          lun,
          lu,
          cdb,
          dataOut,
          dataOutParts: undefined,
          expectedLength,
          task,
          aborted: () => task.aborted,
        }
      : partsContext(this, st.key, lun, lu, cdb, dataOut as readonly Buffer[], expectedLength, task);
    try {
      if (cdb[0] === Op.REQUEST_SENSE) return this.requestSense(st, lun, lu, cdb, expectedLength);
      if (!lu) {
        if (typeof spec === 'object' && spec.lunless) {
          return result(Status.GOOD, await spec.lunless(base), undefined, expectedLength);
        }
        throw checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
      }
      if (typeof spec !== 'object' || !spec.noUnitAttention) {
        const ua = this.pendingUas(st, lun).shift();
        if (ua) throw checkCondition(SenseKey.UNIT_ATTENTION, ua);
      } else if (cdb[0] === Op.REPORT_LUNS) {
        // Reading the LUN inventory is the acknowledgement REPORTED LUNS DATA HAS CHANGED asks for.
        for (const q of st.uas.values()) {
          const i = q.indexOf(Asc.REPORTED_LUNS_DATA_HAS_CHANGED);
          if (i >= 0) q.splice(i, 1);
        }
      }
      if (spec === 'opcode') throw invalidOpcode();
      if (spec === 'service-action') throw invalidField(1, 4);
      // NACA asks for ACA handling, which we do not offer (NormACA=0): SAM-5 makes that an invalid field.
      if ((cdb[spec.cdbLength - 1]! & 0x04) !== 0) throw invalidField(spec.cdbLength - 1, 2);
      this.checkReservations(st.key, lu, spec);
      // `base` already holds this (defined) lu; a `{ ...base, lu }` copy per command took V8's slow path.
      const ctx = base as CommandContext;
      const reply = await spec.handler(ctx);
      return result(Status.GOOD, reply, undefined, expectedLength);
    } catch (err) {
      if (err instanceof ScsiError) return checkConditionResult(err);
      return checkConditionResult(this.unexpected(err, typeof spec === 'object' ? spec : undefined, lun));
    }
  }

  private checkReservations(key: string, lu: LogicalUnit, spec: CommandSpec): void {
    if (lu.scsi2Holder !== null && lu.scsi2Holder !== key && !spec.scsi2Allowed) throw reservationConflict();
    if (spec.pr !== 'allowed' && lu.pr.conflicts(key, spec.pr)) throw reservationConflict();
  }

  private requestSense(
    st: NexusState,
    lun: number,
    lu: LogicalUnit | undefined,
    cdb: Buffer,
    expectedLength: number,
  ): ScsiResult {
    const alloc = cdb[4]!;
    let sense: Buffer;
    if (!lu) {
      sense = fixedSense(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED);
    } else {
      const ua = this.pendingUas(st, lun).shift();
      sense = ua
        ? fixedSense(SenseKey.UNIT_ATTENTION, ua)
        : fixedSense(SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE);
    }
    const n = Math.min(alloc, sense.length);
    return result(
      Status.GOOD,
      { data: [sense.subarray(0, n)], transferLength: n },
      undefined,
      expectedLength,
    );
  }

  private unexpected(err: unknown, spec: CommandSpec | undefined, lun: number): ScsiError {
    this.logger?.warn({ err, command: spec?.name, lun }, 'SCSI command failed');
    if (spec?.pr === 'read') return checkCondition(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR);
    if (spec?.pr === 'write') return checkCondition(SenseKey.MEDIUM_ERROR, Asc.WRITE_ERROR);
    return checkCondition(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE);
  }
}

/** A context whose Data-Out is a list of buffers, joined into `dataOut` only if a handler reads it. */
function partsContext(
  services: TargetServices,
  nexusKey: string,
  lun: number,
  lu: LogicalUnit | undefined,
  cdb: Buffer,
  parts: readonly Buffer[],
  expectedLength: number,
  task: TaskRecord,
): LunlessContext {
  let joined: Buffer | undefined;
  return {
    services,
    nexusKey,
    lun,
    lu,
    cdb,
    get dataOut() {
      joined ??= Buffer.concat(parts);
      return joined;
    },
    dataOutParts: parts,
    expectedLength,
    task,
    aborted: () => task.aborted,
  };
}

function sameMap(a: ReadonlyMap<number, LogicalUnit>, b: ReadonlyMap<number, LogicalUnit>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

async function abortAll(tasks: TaskRecord[]): Promise<void> {
  for (const t of tasks) t.aborted = true;
  await Promise.all(tasks.map(whenDone));
}
