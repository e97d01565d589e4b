/**
 * One iSCSI connection, target side, from the first Login Request to the socket's close (RFC 7143).
 * With MaxConnections=1 a connection is its session, so this class also owns the session state: the CmdSN
 * window, the task table, Data-Out reassembly and R2T generation, Data-In splitting, task management,
 * NOP keepalive, text requests and logout.
 *
 * Sans-IO: the owner feeds received bytes to receive() and tells it about drain and close; every PDU goes
 * out as Buffer[] through the ConnectionTransport. SCSI commands run through the async ScsiExecutor and may
 * complete in any order.
 */
import {
  answerTextRequest,
  LoginHandler,
  type LoginResult,
  type NegotiatedParams,
  TextExchange,
} from '../login/index.js';
import {
  AsyncEvent,
  DataDigestError,
  type DataOutPdu,
  type Decoded,
  type DecodedPdu,
  type DigestOptions,
  encodeAsyncMessage,
  encodeLoginResponse,
  encodeLogoutResponse,
  encodeNopIn,
  encodeR2T,
  encodeReject,
  encodeScsiResponse,
  encodeTaskMgmtResponse,
  encodeTextResponse,
  type LoginRequestPdu,
  type LoginResponsePdu,
  LogoutReason,
  type LogoutRequestPdu,
  LogoutResponseCode,
  lunNumber,
  type NopOutPdu,
  Opcode,
  PduDecoder,
  ProtocolError,
  parsePdu,
  RESERVED_TAG,
  RejectReason,
  type ScsiCommandPdu,
  ScsiServiceResponse,
  type TaskMgmtRequestPdu,
  type TextRequestPdu,
  TmfFunction,
  TmfResponse,
} from '../pdu/index.js';
import { fixedSense, SenseKey, Status } from '../scsi/index.js';
import { BufferCursor, encodeDataInParts } from './data-in.js';
import type { IscsiTarget } from './target.js';
import type { ConnectionInfo, ConnectionTransport, ItNexus, ScsiResult, SessionLimits } from './types.js';
import { ConnectionWarnLimiter } from './warn-limiter.js';

const EMPTY = Buffer.alloc(0);
/** Login PDUs carry at most 8192 bytes (RFC 7143 §6.1) until MaxRecvDataSegmentLength takes effect. */
const LOGIN_MAX_SEGMENT = 8192;
/** Immediate commands are outside the CmdSN window; past this many tasks reading stops anyway. */
const IMMEDIATE_SLACK = 64;
/** Output written to the transport per write call, so one writev covers many small PDUs. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/** Queued output at which a flush happens at once rather than at the end of the event-loop turn. */
const EAGER_FLUSH_BYTES = 256 * 1024;
/** ITTs of terminated tasks remembered so their late Data-Out is dropped quietly. */
const MAX_TERMINATED = 256;

type AscPair = readonly [number, number];
/** iSCSI conditions reported as ABORTED COMMAND (RFC 7143 §13.3 and SPC-4's 4B/xx data-phase codes). */
const Cond = {
  UNEXPECTED_UNSOLICITED_DATA: [0x0c, 0x0c],
  NOT_ENOUGH_UNSOLICITED_DATA: [0x0c, 0x0d],
  PROTOCOL_SERVICE_CRC_ERROR: [0x47, 0x05],
  DATA_PHASE_ERROR: [0x4b, 0x00],
  INVALID_TTT: [0x4b, 0x01],
  TOO_MUCH_WRITE_DATA: [0x4b, 0x02],
  DATA_OFFSET_ERROR: [0x4b, 0x05],
  INTERNAL_TARGET_FAILURE: [0x44, 0x00],
  INVALID_FIELD_IN_IU: [0x0e, 0x03],
} as const satisfies Record<string, AscPair>;

/** What a connection knows about its session once logged in. */
export interface SessionInfo {
  type: 'Normal' | 'Discovery';
  initiatorName: string;
  initiatorAlias?: string;
  isid: Buffer;
  isidHex: string;
  tsih: number;
  cid: number;
  nexus: ItNexus;
  auth: LoginResult['auth'];
}

/** One Data-Out sequence: the unsolicited burst (TTT 0xffffffff) or the answer to one R2T. */
interface Sequence {
  ttt: number;
  offset: number;
  length: number;
  received: number;
  dataSN: number;
}

interface Task {
  itt: number;
  lunField: bigint;
  lun: number;
  cdb: Buffer;
  edtl: number;
  read: boolean;
  write: boolean;
  /** Data-In the initiator accepts: EDTL for reads (the bidi read length for bidirectional ones), else 0. */
  expectedIn: number;
  /** collecting Data-Out → queued (waiting for memory) → executing → done. */
  state: 'collecting' | 'queued' | 'executing' | 'done';
  pieces: { offset: number; data: Buffer }[];
  received: number;
  unsolicited: Sequence | undefined;
  r2ts: Map<number, Sequence>;
  /** Next byte offset to solicit. */
  nextOffset: number;
  r2tSN: number;
  /** Bytes charged to the connection's R2T budget. */
  solicited: number;
  /** Bytes charged to the pending-I/O account while executing. */
  charge: number;
  /**
   * Bytes charged to the target-wide budget: immediate and unsolicited data as it arrives, R2T bursts when
   * solicited, then the execution charge (write data plus read buffer) until the command completes.
   */
  held: number;
  waitingBudget: boolean;
  failure: { status: number; sense: Buffer } | undefined;
  aborted: boolean;
}

/** Serial-number comparison (RFC 1982, 32 bits): a − b as a signed number. */
function snDiff(a: number, b: number): number {
  return (a - b) | 0;
}

const CMDSN_OPCODES: ReadonlySet<number> = new Set([
  Opcode.NopOut,
  Opcode.ScsiCommand,
  Opcode.TaskMgmtRequest,
  Opcode.TextRequest,
  Opcode.LogoutRequest,
]);

let nextConnectionId = 1;

/** One iSCSI connection (and, with MaxConnections=1, its session). */
export class IscsiConnection {
  readonly id = nextConnectionId++;
  private phase: 'login' | 'full' | 'logout' | 'closed' = 'login';
  private readonly decoder = new PduDecoder({
    role: 'target',
    maxDataSegmentLength: LOGIN_MAX_SEGMENT,
    splitData: true,
  });
  private readonly limits: Readonly<SessionLimits>;
  private login: LoginHandler | undefined;
  private session: SessionInfo | undefined;
  private params: NegotiatedParams | undefined;
  private digests: DigestOptions = {};
  private statSN = 0;
  private expCmdSN = 0;
  private maxCmdSN = 0;
  /** Non-immediate commands that arrived ahead of ExpCmdSN, by CmdSN. */
  private readonly early = new Map<number, DecodedPdu>();
  private readonly tasks = new Map<number, Task>();
  private readonly terminated = new Set<number>();
  /** ITTs an ABORT TASK named before their command arrived. */
  private readonly abortOnArrival = new Set<number>();
  private readonly digestFailed = new WeakSet<object>();
  private text: TextExchange | undefined;
  private nextTtt = 1;
  private out: Buffer[][] = [];
  private outBytes = 0;
  private congested = false;
  private paused = false;
  private inputHeld = false;
  private pendingBytes = 0;
  private executing = 0;
  private idleWaiters: (() => void)[] = [];
  private solicitedInFlight = 0;
  private budgetWaiters: Task[] = [];
  /**
   * The task that may solicit past the budgets (per-connection and target-wide) until it is done, so that one
   * write per connection always completes: without it, tasks that each got part of their data could wait on
   * each other's budget forever.
   */
  private r2tOwner: Task | undefined;
  /** Bytes charged to the target-wide budget: the tasks' `held` plus queued output. */
  private held = 0;
  /** Data-Out sequences (unsolicited or R2T) the initiator still owes: reading must go on for them. */
  private openSequences = 0;
  /** The target nudged us: the shared budget has room again. */
  private budgetWoken = false;
  /** Tasks ready to execute, waiting until pending I/O and output fit in maxPendingBytes. */
  private admission: Task[] = [];
  private closing = false;
  private settleScheduled = false;
  private readonly runSettle = (): void => {
    this.settleScheduled = false;
    this.settle();
  };
  private ended = false;
  private closed = false;
  private readonly onClosed: (() => void)[] = [];
  private lastRx = Date.now();
  private ping: { ttt: number; sentAt: number } | undefined;
  private loginTimer: NodeJS.Timeout | undefined;
  private nopTimer: NodeJS.Timeout | undefined;
  private revokeTimer: NodeJS.Timeout | undefined;
  /** Caps this connection's warning lines (a hostile peer can provoke one per PDU). */
  private readonly warnings: ConnectionWarnLimiter;
  private readonly logBase: object;
  private readonly log: {
    debug(o: object, m: string): void;
    info(o: object, m: string): void;
    warn(o: object, m: string): void;
  };

  constructor(
    private readonly target: IscsiTarget,
    private readonly transport: ConnectionTransport,
    readonly info: ConnectionInfo,
  ) {
    this.limits = target.limits;
    const base = { conn: this.id, remote: `${info.remoteAddress}:${info.remotePort}` };
    const l = target.logger;
    const debug = (o: object, m: string) => l.debug({ ...base, ...o }, m);
    this.warnings = new ConnectionWarnLimiter(target.warnings, debug);
    this.log = {
      debug,
      info: (o, m) => l.info({ ...base, ...o }, m),
      warn: (o, m) => this.warnings.warn({ ...base, ...o }, m),
    };
    this.logBase = base;
    target.attach(this);
    this.loginTimer = setTimeout(() => {
      this.log.warn(
        { timeoutMs: this.limits.loginTimeoutMs },
        'iSCSI login timed out: dropping the connection',
      );
      this.destroy('login timeout');
    }, this.limits.loginTimeoutMs);
    this.loginTimer.unref?.();
  }

  /** The logged-in session, once login completed. */
  get sessionInfo(): SessionInfo | undefined {
    return this.session;
  }

  /** Negotiated parameters, once login completed. */
  get negotiated(): NegotiatedParams | undefined {
    return this.params;
  }

  /** True once the connection is gone. */
  get isClosed(): boolean {
    return this.closed;
  }

  // ---- transport events ----

  /** Bytes from the peer. */
  receive(chunk: Buffer): void {
    // Once held (logout, failed login, shutdown) nothing more is processed, so nothing more is kept.
    if (this.closed || this.inputHeld) return;
    this.lastRx = Date.now();
    this.decoder.push(chunk);
    this.drainInput();
    this.afterEvent();
  }

  /** The transport accepted everything written so far. */
  drained(): void {
    if (this.closed) return;
    this.congested = false;
    this.afterEvent();
  }

  /** The transport closed (peer went away or we ended it). */
  transportClosed(): void {
    this.cleanup('transport closed');
  }

  // ---- lifecycle ----

  /** Closes after the output queued so far has been sent. */
  close(reason: string): void {
    if (this.closed || this.closing) return;
    this.log.debug({ reason }, 'closing iSCSI connection');
    this.closing = true;
    this.holdInput();
    this.stopTimers();
    this.afterEvent();
  }

  /** Drops the connection at once; executing commands are aborted. */
  destroy(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason }, 'dropping iSCSI connection');
    this.transport.destroy();
    this.cleanup(reason);
  }

  /**
   * Graceful stop for daemon shutdown: ask the initiator to log out, stop taking commands, let executing
   * ones finish (bounded) and close.
   */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    if (this.phase !== 'full' || this.session?.type !== 'Normal') {
      this.destroy('target shutting down');
      return;
    }
    this.sendAsync(AsyncEvent.LogoutRequested, { parameter3: 0 });
    this.holdInput();
    this.terminateCollecting(() => true);
    this.afterEvent();
    await this.waitIdle(this.limits.drainTimeoutMs);
    const done = new Promise<void>((resolve) => {
      if (this.closed) resolve();
      else this.onClosed.push(resolve);
    });
    this.close('target shutting down');
    const t = setTimeout(() => this.destroy('shutdown timeout'), 2000);
    await done;
    clearTimeout(t);
  }

  /** Stops processing input for good: the connection is on its way out. */
  private holdInput(): void {
    this.inputHeld = true;
    if (!this.paused) {
      this.paused = true;
      this.transport.pause();
    }
  }

  private cleanup(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.phase = 'closed';
    this.stopTimers();
    if (this.revokeTimer) clearTimeout(this.revokeTimer);
    for (const t of this.tasks.values()) {
      t.aborted = true;
      // An executing command's buffers stay in use until the SCSI layer returns; completed() releases them.
      if (t.state !== 'executing') this.releaseTask(t);
    }
    this.tasks.clear();
    this.early.clear();
    this.hold(-this.outBytes);
    this.out = [];
    this.outBytes = 0;
    this.openSequences = 0;
    this.budgetWaiters = [];
    this.r2tOwner = undefined;
    this.admission = [];
    if (this.session) {
      this.log.info(
        {
          initiator: this.session.initiatorName,
          isid: this.session.isidHex,
          tsih: this.session.tsih,
          reason,
        },
        'iSCSI session closed',
      );
    }
    this.warnings.summary(this.logBase);
    this.target.detach(this);
    for (const w of this.idleWaiters.splice(0)) w();
    for (const w of this.onClosed.splice(0)) w();
  }

  private stopTimers(): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    if (this.nopTimer) clearInterval(this.nopTimer);
    this.loginTimer = undefined;
    this.nopTimer = undefined;
  }

  // ---- asynchronous events (called by the target) ----

  /** AsyncEvent 0 carrying UNIT ATTENTION 3F/0E: the initiator should rescan its LUNs. */
  notifyLunsChanged(): void {
    if (this.phase !== 'full' || this.session?.type !== 'Normal') return;
    const sense = fixedSense(SenseKey.UNIT_ATTENTION, [0x3f, 0x0e]);
    const data = Buffer.alloc(2 + sense.length);
    data.writeUInt16BE(sense.length, 0);
    sense.copy(data, 2);
    this.sendAsync(AsyncEvent.ScsiAsyncEvent, { data });
    this.afterEvent();
  }

  /** The initiator lost access: ask it to log out, and drop the session if it is still here after `graceMs`. */
  revoke(graceMs: number): void {
    if (this.phase !== 'full' || this.revokeTimer) return;
    this.log.info(
      { initiator: this.session?.initiatorName },
      'initiator no longer has access: requesting logout',
    );
    this.sendAsync(AsyncEvent.LogoutRequested, { parameter3: Math.max(1, Math.ceil(graceMs / 2000)) });
    this.afterEvent();
    this.revokeTimer = setTimeout(() => this.destroy('access revoked'), graceMs);
    this.revokeTimer.unref?.();
  }

  /** Access was granted again before the grace period ended. */
  cancelRevocation(): void {
    if (this.revokeTimer) clearTimeout(this.revokeTimer);
    this.revokeTimer = undefined;
  }

  private sendAsync(
    event: number,
    p: { data?: Buffer; parameter1?: number; parameter2?: number; parameter3?: number },
  ): void {
    const pdu = encodeAsyncMessage(
      {
        lun: 0n,
        statSN: this.takeStatSN(),
        expCmdSN: this.expCmdSN,
        maxCmdSN: this.windowMax(),
        asyncEvent: event,
        ...p,
      },
      this.digests,
    );
    this.enqueue(pdu);
  }

  // ---- input ----

  private drainInput(): void {
    while (!this.closed && !this.inputHeld) {
      let pdu: DecodedPdu | undefined;
      try {
        pdu = this.decoder.next();
      } catch (err) {
        if (!this.onDecodeError(err)) return;
        continue;
      }
      if (!pdu) return;
      try {
        this.onPdu(pdu);
      } catch (err) {
        this.log.warn({ err, opcode: pdu.opcode }, 'internal error handling a PDU: dropping the connection');
        this.destroy('internal error');
        return;
      }
    }
  }

  /** Handles a decoder error; returns false when the connection was dropped. */
  private onDecodeError(err: unknown): boolean {
    if (!(err instanceof ProtocolError) || err.fatal || this.phase === 'login' || !err.header) {
      const e = err as ProtocolError;
      this.log.warn(
        { reason: e.reason ?? 'internal', opcode: e.opcode, err: e.message },
        'malformed iSCSI PDU: dropping the connection',
      );
      this.destroy('protocol error');
      return false;
    }
    const header = err.header;
    if (err instanceof DataDigestError) {
      this.log.warn({ opcode: err.opcode, itt: err.itt }, 'data digest error: PDU rejected');
      this.reject(RejectReason.DataDigestError, header);
      const length = (header[5]! << 16) | (header[6]! << 8) | header[7]!;
      let pdu: DecodedPdu;
      try {
        pdu = parsePdu(header, EMPTY, EMPTY);
      } catch {
        return true;
      }
      if (pdu.opcode === Opcode.DataOut) {
        this.onDataOut(pdu, length);
      } else if (pdu.opcode === Opcode.ScsiCommand) {
        this.digestFailed.add(pdu);
        this.ordered(pdu);
      } else if (CMDSN_OPCODES.has(pdu.opcode) && 'cmdSN' in pdu && !pdu.immediate) {
        this.skipCmdSN(pdu.cmdSN);
      }
      return true;
    }
    this.log.warn({ reason: err.reason, opcode: err.opcode, err: err.message }, 'invalid iSCSI PDU rejected');
    this.reject(err.rejectReason ?? RejectReason.ProtocolError, header);
    const opcode = header[0]! & 0x3f;
    const immediate = (header[0]! & 0x40) !== 0;
    // A rejected command still used its CmdSN; skipping it keeps later commands from waiting forever.
    if (CMDSN_OPCODES.has(opcode) && !immediate) this.skipCmdSN(header.readUInt32BE(24));
    return true;
  }

  private onPdu(pdu: DecodedPdu): void {
    if (this.phase === 'login') {
      if (pdu.opcode !== Opcode.LoginRequest) {
        this.log.warn({ opcode: pdu.opcode }, 'PDU before login completed: dropping the connection');
        this.destroy('PDU before login');
        return;
      }
      this.handleLogin(pdu);
      return;
    }
    if (this.phase !== 'full') return;
    switch (pdu.opcode) {
      case Opcode.LoginRequest:
        this.log.warn({}, 'Login Request in full feature phase: dropping the connection');
        this.destroy('login in full feature phase');
        return;
      case Opcode.DataOut:
        this.onDataOut(pdu);
        return;
      case Opcode.SnackRequest:
        // ERL 0: no retransmission to offer.
        this.reject(RejectReason.ProtocolError, pdu.header);
        return;
      case Opcode.NopOut:
        if (pdu.itt === RESERVED_TAG) this.onNopOutReply(pdu);
        else this.ordered(pdu);
        return;
      case Opcode.ScsiCommand:
      case Opcode.TaskMgmtRequest:
      case Opcode.TextRequest:
      case Opcode.LogoutRequest:
        this.ordered(pdu);
        return;
      default:
        this.reject(RejectReason.ProtocolError, pdu.header);
    }
  }

  // ---- login ----

  private handleLogin(pdu: Decoded<LoginRequestPdu>): void {
    if (this.target.isStopping) {
      this.destroy('target shutting down');
      return;
    }
    this.login ??= new LoginHandler(this.target.loginPolicy(), {
      params: this.target.loginParams,
      cmdWindow: this.limits.queueDepth,
    });
    const step = this.login.handle(pdu);
    if (step.status === 'continue') {
      this.sendLoginResponse(step.response);
      return;
    }
    if (step.status === 'complete') {
      this.sendLoginResponse(step.response);
      this.enterFullFeature(step.result);
      return;
    }
    const initiator = /InitiatorName=([^\0]*)/.exec(pdu.data.toString('latin1'))?.[1];
    this.log.info(
      { status: `0x${step.loginStatus.toString(16).padStart(4, '0')}`, reason: step.reason, initiator },
      'iSCSI login failed',
    );
    this.holdInput();
    const delay = this.target.throttle?.failure(this.info.remoteAddress) ?? 0;
    const answer = () => {
      if (this.closed) return;
      this.sendLoginResponse(step.response);
      this.close('login failed');
    };
    if (delay > 0) {
      this.stopTimers();
      const t = setTimeout(answer, delay);
      t.unref?.();
      this.onClosed.push(() => clearTimeout(t));
    } else {
      answer();
    }
  }

  private sendLoginResponse(r: LoginResponsePdu): void {
    // Login responses never carry digests, not even the final one (RFC 7143 §13.1).
    this.enqueue(encodeLoginResponse(r));
  }

  private enterFullFeature(result: LoginResult): void {
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = undefined;
    this.login = undefined;
    this.target.throttle?.success(this.info.remoteAddress);
    const params = result.params;
    this.params = params;
    this.digests = { headerDigest: result.digests.header, dataDigest: result.digests.data };
    this.decoder.setDigests(result.digests);
    this.decoder.setLimits({ maxDataSegmentLength: params.targetMaxRecvDataSegmentLength });
    this.statSN = (result.statSN + 1) >>> 0;
    this.expCmdSN = result.expCmdSN >>> 0;
    this.maxCmdSN = (this.expCmdSN + this.limits.queueDepth - 1) >>> 0;
    const isidHex = result.isid.toString('hex');
    this.session = {
      type: result.sessionType,
      initiatorName: result.initiatorName,
      isid: result.isid,
      isidHex,
      tsih: result.tsih,
      cid: result.cid,
      nexus: { initiator: result.initiatorName, isid: isidHex },
      auth: result.auth,
      ...(result.initiatorAlias !== undefined ? { initiatorAlias: result.initiatorAlias } : {}),
    };
    this.text = new TextExchange({
      maxSegmentLength: params.initiatorMaxRecvDataSegmentLength,
      nextTtt: () => this.allocTtt(),
    });
    this.phase = 'full';
    this.target.sessionStarted(this, result);
    this.log.info(
      {
        initiator: result.initiatorName,
        isid: isidHex,
        tsih: result.tsih,
        type: result.sessionType,
        auth: result.auth,
        headerDigest: params.headerDigest,
        dataDigest: params.dataDigest,
        mrdsl: params.initiatorMaxRecvDataSegmentLength,
        maxBurst: params.maxBurstLength,
        firstBurst: params.firstBurstLength,
        initialR2T: params.initialR2T,
        immediateData: params.immediateData,
      },
      'iSCSI login complete',
    );
    if (this.limits.nopIntervalMs > 0) {
      const period = Math.max(50, Math.min(this.limits.nopIntervalMs, this.limits.nopTimeoutMs) / 2);
      this.nopTimer = setInterval(() => this.keepalive(), period);
      this.nopTimer.unref?.();
    }
  }

  // ---- CmdSN ordering ----

  /** Delivers a CmdSN-bearing PDU in CmdSN order (immediate ones at once). */
  private ordered(pdu: DecodedPdu): void {
    if (!('cmdSN' in pdu)) return;
    if (pdu.immediate) {
      this.dispatch(pdu);
      return;
    }
    const sn = pdu.cmdSN >>> 0;
    // Only inside the advertised window: with every slot taken MaxCmdSN is ExpCmdSN − 1 and even ExpCmdSN is out.
    if (sn === this.expCmdSN && snDiff(this.maxCmdSN, sn) >= 0) {
      this.expCmdSN = (sn + 1) >>> 0;
      this.dispatch(pdu);
      this.releaseEarly();
      return;
    }
    if (snDiff(sn, this.expCmdSN) > 0 && snDiff(this.maxCmdSN, sn) >= 0) {
      if (!this.early.has(sn)) this.early.set(sn, pdu);
      return;
    }
    // RFC 7143 §4.2.2.1: outside the window (or a duplicate) is silently ignored.
    this.log.debug(
      { cmdSN: sn, expCmdSN: this.expCmdSN, maxCmdSN: this.maxCmdSN },
      'CmdSN outside the window: ignored',
    );
  }

  private releaseEarly(): void {
    for (let p = this.early.get(this.expCmdSN); p !== undefined; p = this.early.get(this.expCmdSN)) {
      this.early.delete(this.expCmdSN);
      this.expCmdSN = (this.expCmdSN + 1) >>> 0;
      this.dispatch(p);
    }
  }

  /** Counts a CmdSN as used without running anything (a rejected command). */
  private skipCmdSN(sn: number): void {
    if (sn >>> 0 !== this.expCmdSN || snDiff(this.maxCmdSN, sn) < 0) return;
    this.expCmdSN = (this.expCmdSN + 1) >>> 0;
    this.releaseEarly();
  }

  /**
   * MaxCmdSN to advertise: the window shrinks by the commands still holding a slot, and never moves back
   * (initiators ignore a smaller value anyway).
   */
  private windowMax(): number {
    const slots = this.tasks.size + this.early.size;
    const candidate = (this.expCmdSN + this.limits.queueDepth - 1 - slots) >>> 0;
    if (snDiff(candidate, this.maxCmdSN) > 0) this.maxCmdSN = candidate;
    return this.maxCmdSN;
  }

  private takeStatSN(): number {
    const s = this.statSN;
    this.statSN = (s + 1) >>> 0;
    return s;
  }

  private dispatch(pdu: DecodedPdu): void {
    if (this.phase !== 'full') return;
    switch (pdu.opcode) {
      case Opcode.ScsiCommand:
        this.onScsiCommand(pdu);
        return;
      case Opcode.NopOut:
        this.onNopOut(pdu);
        return;
      case Opcode.TaskMgmtRequest:
        void this.onTaskManagement(pdu);
        return;
      case Opcode.TextRequest:
        this.onText(pdu);
        return;
      case Opcode.LogoutRequest:
        void this.onLogout(pdu);
        return;
    }
  }

  // ---- SCSI commands ----

  private onScsiCommand(pdu: Decoded<ScsiCommandPdu>): void {
    const s = this.session!;
    const p = this.params!;
    if (s.type !== 'Normal') {
      this.reject(RejectReason.ProtocolError, pdu.header);
      return;
    }
    const itt = pdu.itt >>> 0;
    if (this.abortOnArrival.delete(itt)) {
      this.log.debug({ itt }, 'command aborted before it arrived: dropped');
      return;
    }
    if (this.tasks.has(itt)) {
      this.reject(RejectReason.TaskInProgress, pdu.header);
      return;
    }
    const digestFailed = this.digestFailed.has(pdu);
    // DataSegmentLength: the data's length whether it arrived whole, in parts, or failed its digest.
    const dataLength = (pdu.header[5]! << 16) | (pdu.header[6]! << 8) | pdu.header[7]!;
    const read = pdu.read === true;
    const write = pdu.write === true;
    const edtl = pdu.expectedDataTransferLength >>> 0;
    const task: Task = {
      itt,
      lunField: pdu.lun,
      lun: lunNumber(pdu.lun),
      cdb: pdu.cdb,
      edtl,
      read,
      write,
      expectedIn: read ? (write ? (pdu.bidiReadExpectedLength ?? 0) : edtl) : 0,
      state: 'collecting',
      pieces: [],
      received: 0,
      unsolicited: undefined,
      r2ts: new Map(),
      nextOffset: 0,
      r2tSN: 0,
      solicited: 0,
      charge: 0,
      held: 0,
      waitingBudget: false,
      failure: undefined,
      aborted: false,
    };
    this.tasks.set(itt, task);
    if (digestFailed) this.fail(task, Cond.PROTOCOL_SERVICE_CRC_ERROR);
    if (edtl > this.limits.maxCommandBytes || task.expectedIn > this.limits.maxCommandBytes) {
      this.fail(task, Cond.INVALID_FIELD_IN_IU, SenseKey.ILLEGAL_REQUEST);
    }
    const unsolicitedLimit = write ? Math.min(p.firstBurstLength, edtl) : 0;
    if (dataLength > 0) {
      if (!write || !p.immediateData || dataLength > unsolicitedLimit) {
        this.fail(task, Cond.UNEXPECTED_UNSOLICITED_DATA);
      } else if (!task.failure) {
        addPieces(task.pieces, 0, pdu);
        this.holdFor(task, dataLength);
      }
      task.received = dataLength;
    }
    task.nextOffset = task.received;
    if (!pdu.final) {
      // Unsolicited Data-Out follows; it is absorbed even when not allowed, so the failure is reported once.
      if (!write || p.initialR2T) this.fail(task, Cond.UNEXPECTED_UNSOLICITED_DATA);
      this.openSequences++;
      task.unsolicited = {
        ttt: RESERVED_TAG,
        offset: task.received,
        length: Math.max(0, (write ? unsolicitedLimit : edtl) - task.received),
        received: 0,
        dataSN: 0,
      };
    }
    this.advance(task);
  }

  private onDataOut(pdu: Decoded<DataOutPdu>, digestFailedLength?: number): void {
    const itt = pdu.itt >>> 0;
    const task = this.tasks.get(itt);
    if (task?.state !== 'collecting') {
      if (this.terminated.has(itt) || task) {
        this.log.debug({ itt }, 'Data-Out for a finished task: dropped');
        return;
      }
      this.log.warn({ itt }, 'Data-Out for an unknown task: rejected');
      this.reject(RejectReason.InvalidPduField, pdu.header);
      return;
    }
    const length = digestFailedLength ?? segmentLength(pdu);
    const seq = pdu.ttt === RESERVED_TAG ? task.unsolicited : task.r2ts.get(pdu.ttt >>> 0);
    if (!seq) {
      this.fail(task, pdu.ttt === RESERVED_TAG ? Cond.UNEXPECTED_UNSOLICITED_DATA : Cond.INVALID_TTT);
      this.advance(task);
      return;
    }
    if (digestFailedLength !== undefined) this.fail(task, Cond.PROTOCOL_SERVICE_CRC_ERROR);
    if (pdu.dataSN >>> 0 !== seq.dataSN) {
      this.log.warn({ itt, dataSN: pdu.dataSN, expected: seq.dataSN }, 'Data-Out with a wrong DataSN');
      this.fail(task, Cond.DATA_PHASE_ERROR);
    } else if (pdu.bufferOffset >>> 0 !== seq.offset + seq.received) {
      this.log.warn(
        { itt, bufferOffset: pdu.bufferOffset, expected: seq.offset + seq.received },
        'Data-Out with a wrong BufferOffset',
      );
      this.fail(task, Cond.DATA_OFFSET_ERROR);
    } else if (seq.received + length > seq.length) {
      this.log.warn({ itt, length, room: seq.length - seq.received }, 'Data-Out beyond the solicited range');
      this.fail(task, Cond.TOO_MUCH_WRITE_DATA);
    } else if (!task.failure && length > 0) {
      addPieces(task.pieces, pdu.bufferOffset >>> 0, pdu);
      task.received += length;
      // Solicited data was charged with its R2T.
      if (seq.ttt === RESERVED_TAG) this.holdFor(task, length);
    }
    seq.dataSN = (seq.dataSN + 1) >>> 0;
    seq.received += length;
    if (pdu.final) {
      this.openSequences--;
      if (seq.ttt === RESERVED_TAG) {
        task.unsolicited = undefined;
        task.nextOffset = Math.max(task.nextOffset, task.received);
      } else {
        task.r2ts.delete(seq.ttt);
        if (seq.received < seq.length) this.fail(task, Cond.DATA_PHASE_ERROR);
      }
    }
    this.advance(task);
  }

  /** Moves a collecting task on: execute, solicit more data, or report its failure. */
  private advance(task: Task): void {
    if (task.state !== 'collecting') return;
    const open = task.unsolicited !== undefined || task.r2ts.size > 0;
    if (task.failure) {
      if (!open) this.respondFailure(task);
      return;
    }
    if (!task.write || task.received >= task.edtl) {
      if (!open) this.execute(task);
      return;
    }
    if (task.unsolicited) return;
    this.solicit(task);
  }

  /**
   * Sends R2Ts within MaxOutstandingR2T, MaxBurstLength, the connection's solicited-bytes budget and the
   * target-wide budget (a burst is charged to it when solicited). One task per connection, the r2tOwner,
   * goes past both: it is taken by a blocked task that already holds solicited data (or by any when nothing
   * is solicited), and held until that task is done, so neither budget can stall a connection.
   */
  private solicit(task: Task): void {
    const p = this.params!;
    while (task.r2ts.size < p.maxOutstandingR2T && task.nextOffset < task.edtl) {
      const length = Math.min(p.maxBurstLength, task.edtl - task.nextOffset);
      if (this.r2tOwner !== task) {
        const shared = !this.target.budgetFits(length);
        if (shared || this.solicitedInFlight + length > this.limits.maxSolicitedBytes) {
          if (this.r2tOwner === undefined && (task.solicited > 0 || this.solicitedInFlight === 0)) {
            this.r2tOwner = task;
          } else {
            if (shared) this.target.waitForBudget(this);
            if (!task.waitingBudget) {
              task.waitingBudget = true;
              this.budgetWaiters.push(task);
            }
            return;
          }
        }
      }
      const ttt = this.allocTtt();
      const seq: Sequence = { ttt, offset: task.nextOffset, length, received: 0, dataSN: 0 };
      task.r2ts.set(ttt, seq);
      this.openSequences++;
      task.nextOffset += length;
      task.solicited += length;
      this.solicitedInFlight += length;
      this.holdFor(task, length);
      this.enqueue(
        encodeR2T(
          {
            lun: task.lunField,
            itt: task.itt,
            ttt,
            statSN: this.statSN,
            expCmdSN: this.expCmdSN,
            maxCmdSN: this.windowMax(),
            r2tSN: task.r2tSN++,
            bufferOffset: seq.offset,
            desiredDataTransferLength: length,
          },
          this.digests,
        ),
      );
    }
  }

  private fail(task: Task, asc: AscPair, key: number = SenseKey.ABORTED_COMMAND): void {
    if (task.failure) return;
    task.failure = { status: Status.CHECK_CONDITION, sense: fixedSense(key, asc) };
    task.pieces = [];
    // The data is dropped, and what still arrives for it is not kept.
    this.releaseTask(task);
  }

  private respondFailure(task: Task): void {
    const f = task.failure!;
    this.finish(task);
    this.sendResult(task, {
      status: f.status,
      sense: f.sense,
      data: [],
      dataLength: 0,
      transferLength: task.edtl,
    });
  }

  /** Bytes this connection holds for I/O: executing commands, unsent output, the socket's buffer. */
  private load(): number {
    return this.pendingBytes + this.outBytes + this.transport.bufferedBytes;
  }

  private charge(task: Task): number {
    return (task.write ? task.edtl : 0) + task.expectedIn;
  }

  /** Changes the bytes this connection holds, here and in the target-wide total. */
  private hold(delta: number): void {
    this.held += delta;
    this.target.charge(delta);
  }

  private holdFor(task: Task, bytes: number): void {
    task.held += bytes;
    this.hold(bytes);
  }

  /** Returns everything a task holds to the target-wide budget. */
  private releaseTask(task: Task): void {
    const n = task.held;
    if (n !== 0) {
      task.held = 0;
      this.hold(-n);
    }
  }

  /**
   * Whether a task must wait before it starts: it would take the connection past maxPendingBytes, or the
   * target past its budget (then the target is asked for a nudge). The first task of a connection always
   * starts, so neither bound can stall it.
   */
  private mustWait(task: Task): boolean {
    if (this.executing === 0) return false;
    const charge = this.charge(task);
    if (this.load() + charge > this.limits.maxPendingBytes) return true;
    // A write's data is charged already; only what starting adds (the read buffer) needs room.
    const extra = charge - task.held;
    if (extra > 0 && !this.target.budgetFits(extra)) {
      this.target.waitForBudget(this);
      return true;
    }
    return false;
  }

  /**
   * Runs a task whose data is complete, unless that would take the connection past maxPendingBytes (or the
   * target past its budget) while something else is still executing: then it queues. Pausing the socket
   * alone would not bound memory, since one received chunk can hold many commands.
   */
  private execute(task: Task): void {
    if (this.admission.length > 0 || this.mustWait(task)) {
      task.state = 'queued';
      this.admission.push(task);
      return;
    }
    this.start(task);
  }

  private admit(): void {
    while (this.admission.length > 0) {
      const t = this.admission[0]!;
      if (t.state !== 'queued') {
        this.admission.shift();
        continue;
      }
      if (this.mustWait(t)) return;
      this.admission.shift();
      this.start(t);
    }
  }

  private start(task: Task): void {
    task.state = 'executing';
    let dataOut: Buffer | readonly Buffer[] = EMPTY;
    if (task.write && task.edtl > 0) dataOut = assemble(task.pieces, task.edtl);
    task.pieces = [];
    task.charge = this.charge(task);
    this.pendingBytes += task.charge;
    if (task.charge !== task.held) this.holdFor(task, task.charge - task.held);
    this.executing++;
    const s = this.session!;
    this.target.scsi
      .execute(s.nexus, task.lun, task.cdb, dataOut, task.expectedIn, { taskTag: task.itt })
      .then(
        (res) => this.completed(task, res),
        (err: unknown) => {
          this.log.warn({ err, itt: task.itt }, 'SCSI command failed unexpectedly');
          this.completed(task, {
            status: Status.CHECK_CONDITION,
            sense: fixedSense(SenseKey.HARDWARE_ERROR, Cond.INTERNAL_TARGET_FAILURE),
            data: [],
            dataLength: 0,
            transferLength: 0,
          });
        },
      );
  }

  private completed(task: Task, res: ScsiResult): void {
    this.pendingBytes -= task.charge;
    task.charge = 0;
    // Also after the connection closed: the buffers were in use until now.
    this.releaseTask(task);
    this.executing--;
    if (this.closed) return;
    const silent = task.aborted || res.aborted === true;
    this.finish(task);
    if (!silent) this.sendResult(task, res);
    this.afterEvent();
    if (this.executing === 0 && this.admission.length === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Removes a task from the table and returns its budget; done before its response so MaxCmdSN counts the freed slot. */
  private finish(task: Task): void {
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt);
    task.state = 'done';
    this.releaseTask(task);
    if (this.r2tOwner === task) this.r2tOwner = undefined;
    if (task.solicited > 0) {
      this.solicitedInFlight -= task.solicited;
      task.solicited = 0;
      this.serveBudgetWaiters();
    }
    if (task.aborted) this.rememberTerminated(task.itt);
  }

  private serveBudgetWaiters(): void {
    const waiting = this.budgetWaiters;
    this.budgetWaiters = [];
    for (const t of waiting) {
      t.waitingBudget = false;
      if (t.state === 'collecting' && !t.aborted && !t.failure) this.solicit(t);
    }
  }

  private rememberTerminated(itt: number): void {
    this.terminated.add(itt);
    if (this.terminated.size > MAX_TERMINATED) this.terminated.delete(this.terminated.values().next().value!);
  }

  /**
   * Data-In split at the initiator's MaxRecvDataSegmentLength, F at each MaxBurstLength boundary, status in
   * the last PDU when GOOD; otherwise (or without data) a SCSI Response, with sense for CHECK CONDITION.
   */
  private sendResult(task: Task, res: ScsiResult): void {
    const p = this.params!;
    const residual = task.edtl - res.transferLength;
    const underflow = residual > 0;
    const overflow = residual < 0;
    const residualCount = Math.abs(residual);
    const total = task.read ? Math.min(res.dataLength, task.expectedIn) : 0;
    const collapse = res.status === Status.GOOD && res.sense === undefined;
    let dataSN = 0;
    if (total > 0) {
      const cursor = new BufferCursor(res.data);
      const mrdsl = p.initiatorMaxRecvDataSegmentLength;
      const burst = p.maxBurstLength;
      let offset = 0;
      let burstLeft = burst;
      while (offset < total) {
        const n = Math.min(mrdsl, total - offset, burstLeft);
        const parts = cursor.take(n);
        const last = offset + n >= total;
        const endOfBurst = last || burstLeft - n === 0;
        const status = last && collapse;
        this.enqueue(
          encodeDataInParts(
            {
              final: endOfBurst,
              statusPresent: status,
              status: res.status,
              itt: task.itt,
              statSN: status ? this.takeStatSN() : 0,
              expCmdSN: this.expCmdSN,
              maxCmdSN: this.windowMax(),
              dataSN: dataSN++,
              bufferOffset: offset,
              underflow,
              overflow,
              residualCount: status ? residualCount : 0,
            },
            parts,
            this.digests,
          ),
        );
        offset += n;
        burstLeft -= n;
        if (burstLeft === 0) burstLeft = burst;
      }
      if (collapse) return;
    }
    let data: Buffer | undefined;
    if (res.sense && res.sense.length > 0) {
      data = Buffer.alloc(2 + res.sense.length);
      data.writeUInt16BE(res.sense.length, 0);
      res.sense.copy(data, 2);
    }
    this.enqueue(
      encodeScsiResponse(
        {
          response: ScsiServiceResponse.CommandCompleted,
          status: res.status,
          itt: task.itt,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
          expDataSN: task.read ? dataSN : task.r2tSN,
          underflow,
          overflow,
          residualCount,
          // Always present (EMPTY encodes no data segment): a conditional spread here took V8's slow path per response.
          data: data ?? EMPTY,
        },
        this.digests,
      ),
    );
  }

  // ---- NOP ----

  private onNopOut(pdu: Decoded<NopOutPdu>): void {
    if (pdu.ttt !== RESERVED_TAG) {
      this.reject(RejectReason.ProtocolError, pdu.header);
      return;
    }
    const max = this.params!.initiatorMaxRecvDataSegmentLength;
    const data = pdu.data.length > max ? pdu.data.subarray(0, max) : pdu.data;
    this.enqueue(
      encodeNopIn(
        {
          lun: pdu.lun,
          itt: pdu.itt,
          ttt: RESERVED_TAG,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
          data,
        },
        this.digests,
      ),
    );
  }

  /** A NOP-Out with ITT 0xffffffff: the answer to our ping, or a one-way ping needing no answer. */
  private onNopOutReply(pdu: Decoded<NopOutPdu>): void {
    if (this.ping && pdu.ttt === this.ping.ttt) this.ping = undefined;
  }

  private keepalive(): void {
    if (this.phase !== 'full' || this.closed) return;
    const now = Date.now();
    // While we hold the socket paused the initiator cannot answer; that is our doing, not a dead peer.
    if (this.paused) this.lastRx = now;
    if (this.ping) {
      if (this.lastRx > this.ping.sentAt) {
        // Traffic arrived since the ping: the initiator is alive even if its answer is still on the way.
        if (now - this.ping.sentAt > this.limits.nopTimeoutMs) this.ping = undefined;
        return;
      }
      if (now - this.ping.sentAt >= this.limits.nopTimeoutMs) {
        this.log.warn(
          { timeoutMs: this.limits.nopTimeoutMs },
          'no answer to NOP-In: dropping the connection',
        );
        this.destroy('keepalive timeout');
      }
      return;
    }
    if (now - this.lastRx < this.limits.nopIntervalMs) return;
    const ttt = this.allocTtt();
    this.ping = { ttt, sentAt: now };
    this.enqueue(
      encodeNopIn(
        {
          lun: 0n,
          itt: RESERVED_TAG,
          ttt,
          statSN: this.statSN,
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
        },
        this.digests,
      ),
    );
    this.afterEvent();
  }

  // ---- task management ----

  private async onTaskManagement(pdu: Decoded<TaskMgmtRequestPdu>): Promise<void> {
    const s = this.session!;
    const fn = pdu.function;
    const lun = lunNumber(pdu.lun);
    let response: number;
    if (s.type !== 'Normal') {
      this.reject(RejectReason.ProtocolError, pdu.header);
      return;
    }
    try {
      response = await this.taskManagement(fn, lun, pdu);
    } catch (err) {
      this.log.warn({ err, function: fn }, 'task management failed');
      response = TmfResponse.FunctionRejected;
    }
    if (this.closed || this.phase !== 'full') return;
    this.log.info({ function: fn, lun, refItt: pdu.referencedTaskTag, response }, 'task management function');
    this.enqueue(
      encodeTaskMgmtResponse(
        {
          response,
          itt: pdu.itt,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
        },
        this.digests,
      ),
    );
    this.afterEvent();
    if (fn === TmfFunction.TargetColdReset && response === TmfResponse.FunctionComplete) {
      // A cold reset ends the connections to the target (RFC 7143 §11.5.1): those of every initiator
      // sharing an LU with the issuer, not those of initiators it cannot see (see coldResetReaches).
      const issuer = this.session!.nexus;
      const scsi = this.target.scsi;
      this.close('target cold reset');
      for (const c of this.target.liveSessions()) {
        const other = c.sessionInfo?.nexus;
        if (c !== this && other && (scsi.coldResetReaches?.(issuer, other) ?? true)) {
          c.destroy('target cold reset');
        }
      }
    }
  }

  private async taskManagement(fn: number, lun: number, pdu: Decoded<TaskMgmtRequestPdu>): Promise<number> {
    const scsi = this.target.scsi;
    const nexus = this.session!.nexus;
    switch (fn) {
      case TmfFunction.AbortTask: {
        const ref = pdu.referencedTaskTag >>> 0;
        const task = this.tasks.get(ref);
        if (task) {
          if (task.state === 'collecting' || task.state === 'queued') {
            this.terminate(task);
            return TmfResponse.FunctionComplete;
          }
          const r = await scsi.taskManagement(nexus, fn, lun, ref);
          if (r === TmfResponse.FunctionComplete) task.aborted = true;
          return r;
        }
        for (const early of this.early.values()) {
          if (early.opcode === Opcode.ScsiCommand && early.itt >>> 0 === ref) {
            // It stays queued so its CmdSN is still counted, but it will run nothing when its turn comes.
            this.abortOnArrival.add(ref);
            return TmfResponse.FunctionComplete;
          }
        }
        const refSN = pdu.refCmdSN >>> 0;
        if (snDiff(refSN, this.expCmdSN) >= 0 && snDiff(this.maxCmdSN, refSN) >= 0) {
          // Not arrived yet (RFC 7143 §11.5.1): make sure it never runs.
          this.abortOnArrival.add(ref);
          if (this.abortOnArrival.size > MAX_TERMINATED) {
            this.abortOnArrival.delete(this.abortOnArrival.values().next().value!);
          }
          return TmfResponse.FunctionComplete;
        }
        return TmfResponse.TaskDoesNotExist;
      }
      case TmfFunction.AbortTaskSet:
      case TmfFunction.ClearTaskSet:
      case TmfFunction.LogicalUnitReset:
        // Commands still collecting data are unknown to the SCSI layer: end them here.
        this.terminateCollecting((t) => t.lun === lun, true);
        return scsi.taskManagement(nexus, fn, lun);
      case TmfFunction.TargetWarmReset:
      case TmfFunction.TargetColdReset:
        this.terminateCollecting(() => true, true);
        return scsi.taskManagement(nexus, fn, lun);
      case TmfFunction.TaskReassign:
        return TmfResponse.TaskReassignNotSupported;
      case TmfFunction.ClearAca:
        return TmfResponse.NotSupported;
      default:
        return TmfResponse.FunctionRejected;
    }
  }

  /** Ends a task still waiting for Data-Out, without a response (it was aborted). */
  private terminate(task: Task): void {
    task.aborted = true;
    task.pieces = [];
    this.openSequences -= task.r2ts.size + (task.unsolicited ? 1 : 0);
    task.r2ts.clear();
    task.unsolicited = undefined;
    this.finish(task);
  }

  /** Ends tasks the SCSI layer has not seen yet: those collecting data and, for TMFs, those queued to run. */
  private terminateCollecting(which: (t: Task) => boolean, queuedToo = false): void {
    for (const t of [...this.tasks.values()]) {
      if ((t.state === 'collecting' || (queuedToo && t.state === 'queued')) && which(t)) this.terminate(t);
    }
  }

  // ---- text ----

  private onText(pdu: Decoded<TextRequestPdu>): void {
    const s = this.session!;
    const ex = this.text!;
    const r = ex.receive(pdu);
    if (r.kind === 'reject') {
      this.log.debug({ reason: r.reason }, 'Text Request rejected');
      this.reject(r.rejectReason, pdu.header);
      return;
    }
    let reply = r.kind === 'reply' ? r.reply : undefined;
    if (r.kind === 'request') {
      const answer = answerTextRequest(r.pairs, {
        sessionType: s.type,
        sessionTarget: this.target.targetName,
        targets: this.target.sendTargetsFor(s.initiatorName, this.info.localAddress, this.info.localPort),
        targetMaxRecvDataSegmentLength: this.params!.targetMaxRecvDataSegmentLength,
      });
      if (answer.initiatorMaxRecvDataSegmentLength !== undefined) {
        this.params!.initiatorMaxRecvDataSegmentLength = answer.initiatorMaxRecvDataSegmentLength;
        ex.setMaxSegmentLength(answer.initiatorMaxRecvDataSegmentLength);
      }
      reply = ex.reply(answer.responses);
    }
    if (!reply) return;
    this.enqueue(
      encodeTextResponse(
        {
          final: reply.final,
          continue: reply.continue,
          lun: pdu.lun ?? 0n,
          itt: pdu.itt,
          ttt: reply.ttt,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
          data: reply.data,
        },
        this.digests,
      ),
    );
  }

  // ---- logout ----

  private async onLogout(pdu: Decoded<LogoutRequestPdu>): Promise<void> {
    const s = this.session!;
    let response: number = LogoutResponseCode.Success;
    if (pdu.reasonCode === LogoutReason.RemoveConnectionForRecovery) {
      response = LogoutResponseCode.RecoveryNotSupported;
    } else if (pdu.reasonCode === LogoutReason.CloseConnection && pdu.cid !== s.cid) {
      response = LogoutResponseCode.CidNotFound;
    }
    if (response !== LogoutResponseCode.Success) {
      this.sendLogoutResponse(pdu.itt, response);
      return;
    }
    this.log.info({ initiator: s.initiatorName, reason: pdu.reasonCode }, 'iSCSI logout');
    this.phase = 'logout';
    this.holdInput();
    this.stopTimers();
    // Commands still waiting for data cannot complete any more; executing ones get to finish and answer first.
    this.terminateCollecting(() => true);
    await this.waitIdle(this.limits.drainTimeoutMs);
    if (this.closed) return;
    this.sendLogoutResponse(pdu.itt, response);
    this.close('logout');
  }

  /** Queues a Logout Response; Time2Wait and Time2Retain are 0 since no connection state is kept to recover. */
  private sendLogoutResponse(itt: number, response: number): void {
    this.enqueue(
      encodeLogoutResponse(
        {
          response,
          itt,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
          time2Wait: 0,
          time2Retain: 0,
        },
        this.digests,
      ),
    );
  }

  /** Resolves once no command is executing, or after `timeoutMs`. */
  private waitIdle(timeoutMs: number): Promise<void> {
    if ((this.executing === 0 && this.admission.length === 0) || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.log.warn({ executing: this.executing }, 'commands still executing after the drain timeout');
        resolve();
      }, timeoutMs);
      t.unref?.();
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  // ---- output ----

  private reject(reason: number, header: Buffer): void {
    if (this.phase === 'login' || this.closed) return;
    this.enqueue(
      encodeReject(
        {
          reason,
          statSN: this.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.windowMax(),
          data: Buffer.from(header.subarray(0, 48)),
        },
        this.digests,
      ),
    );
  }

  private enqueue(parts: Buffer[]): void {
    if (this.closed) return;
    this.out.push(parts);
    let bytes = 0;
    for (const b of parts) bytes += b.length;
    this.outBytes += bytes;
    this.hold(bytes);
  }

  private allocTtt(): number {
    const t = this.nextTtt;
    this.nextTtt = t >= 0xfffffffe ? 1 : t + 1;
    return t;
  }

  /**
   * After any event, once per event-loop turn: write what is queued, admit waiting commands, apply read
   * backpressure, finish a graceful close. Deferring to setImmediate lets every completion that libuv
   * delivers in one poll phase go out in a single writev instead of one syscall each.
   */
  private afterEvent(): void {
    if (this.closed) return;
    // Large Data-In gains nothing from waiting for company: one writev already carries plenty.
    if (this.outBytes >= EAGER_FLUSH_BYTES) this.flush();
    this.scheduleSettle();
  }

  private scheduleSettle(): void {
    if (this.settleScheduled) return;
    this.settleScheduled = true;
    setImmediate(this.runSettle);
  }

  /**
   * Called by the target when its budget fell to the low-water mark while we waited on it: re-check what
   * waited (reading, R2Ts, command starts) at the end of this turn. Only schedules, as the target is walking
   * its set of waiters.
   */
  budgetFreed(): void {
    if (this.closed) return;
    this.budgetWoken = true;
    this.scheduleSettle();
  }

  private settle(): void {
    if (this.closed) return;
    if (this.budgetWoken) {
      this.budgetWoken = false;
      if (this.budgetWaiters.length > 0) this.serveBudgetWaiters();
    }
    this.flush();
    this.admit();
    if (this.closed) return;
    if (this.closing) {
      if (this.out.length === 0 && !this.congested && !this.ended) {
        // The transport reports its close later; nothing more is read meanwhile.
        this.ended = true;
        this.transport.end();
      }
      return;
    }
    if (this.inputHeld) return;
    const load = this.pendingBytes + this.outBytes + this.transport.bufferedBytes;
    const overloaded =
      load > this.limits.maxPendingBytes || this.tasks.size >= this.limits.queueDepth + IMMEDIATE_SLACK;
    // The target-wide budget: over it (once paused, until it falls to the low-water mark) a connection stops
    // reading, unless it holds nothing (so each connection always gets a command through) or the initiator
    // owes it data for an open sequence (that data is charged already, and what holds the budget needs it).
    const starved = this.held > 0 && this.openSequences === 0 && this.target.overBudget(this.paused);
    if (starved) this.target.waitForBudget(this);
    if ((overloaded || starved) && !this.paused) {
      this.paused = true;
      this.log.debug(
        { load, tasks: this.tasks.size, held: this.held, targetHeld: this.target.pendingBytes },
        starved ? 'target-wide memory budget exhausted: reading paused' : 'backpressure: reading paused',
      );
      this.transport.pause();
    } else if (!overloaded && !starved && this.paused && load <= this.limits.maxPendingBytes / 2) {
      this.paused = false;
      this.transport.resume();
    }
  }

  private flush(): void {
    while (this.out.length > 0 && !this.congested && !this.closed) {
      const batch: Buffer[] = [];
      let bytes = 0;
      let n = 0;
      while (n < this.out.length && (bytes < WRITE_BATCH_BYTES || n === 0)) {
        for (const b of this.out[n]!) {
          batch.push(b);
          bytes += b.length;
        }
        n++;
      }
      this.out.splice(0, n);
      this.outBytes -= bytes;
      this.hold(-bytes);
      if (!this.transport.write(batch)) this.congested = true;
      this.target.stayHot();
    }
  }
}

/** DataSegmentLength of a decoded PDU, without assembling a data segment that arrived in parts. */
function segmentLength(pdu: DecodedPdu): number {
  return pdu.dataParts ? (pdu.header[5]! << 16) | (pdu.header[6]! << 8) | pdu.header[7]! : pdu.data.length;
}

/** Records a PDU's data at `offset`: each part of a data segment left in its receive buffers is a piece. */
function addPieces(pieces: { offset: number; data: Buffer }[], offset: number, pdu: DecodedPdu): void {
  if (!pdu.dataParts) {
    pieces.push({ offset, data: pdu.data });
    return;
  }
  for (const data of pdu.dataParts) {
    pieces.push({ offset, data });
    offset += data.length;
  }
}

/**
 * The write data for the SCSI layer, without copying when possible: a single piece covering it all as is,
 * pieces that tile [0, length) in order as that list (written with writev), anything else (never seen with
 * DataPDUInOrder=Yes, but possible in principle) copied in offset order into one zero-filled buffer.
 */
function assemble(
  pieces: readonly { offset: number; data: Buffer }[],
  length: number,
): Buffer | readonly Buffer[] {
  if (pieces.length === 1 && pieces[0]!.offset === 0 && pieces[0]!.data.length === length)
    return pieces[0]!.data;
  let at = 0;
  for (const p of pieces) at = p.offset === at ? at + p.data.length : -1;
  if (at === length) return pieces.map((p) => p.data);
  const buf = Buffer.alloc(length);
  for (const p of pieces) p.data.copy(buf, p.offset);
  return buf;
}
