import type { ExecuteOptions, ItNexus, ScsiResult } from '../scsi/index.js';

/**
 * The part of the SCSI layer (ScsiTarget) a session drives. An interface so session tests can substitute a
 * scripted executor that completes commands out of order or on demand.
 */
export interface ScsiExecutor {
  /** `dataOut` may be the list of buffers the write data arrived in, back to back (see ScsiTarget.execute). */
  execute(
    nexus: ItNexus,
    lun: number,
    cdb: Buffer,
    dataOut?: Buffer | readonly Buffer[],
    expectedLength?: number,
    opts?: ExecuteOptions,
  ): Promise<ScsiResult>;
  taskManagement(nexus: ItNexus, fn: number, lun: number, refTaskTag?: number): Promise<number>;
  nexusOpened(nexus: ItNexus): void;
  nexusClosed(nexus: ItNexus): void;
  /** Whether a TARGET COLD RESET from `issuer` ends `other`'s session; absent: every session (the RFC's letter). */
  coldResetReaches?(issuer: ItNexus, other: ItNexus): boolean;
}

/** Minimal structured logger (pino's call shape). */
export interface IscsiLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** A logger that drops everything. */
export const NULL_LOGGER: IscsiLogger = {
  debug() {},
  info() {},
  warn() {},
};

/**
 * The byte pipe under one connection (a TCP socket in the daemon, a fake in tests). The connection never
 * touches sockets itself: it hands batches of buffers to `write` and reacts to the owner calling
 * receive()/drained()/transportClosed().
 */
export interface ConnectionTransport {
  /** Writes the buffers in order (one writev). Returns false when the peer is slow: wait for drained(). */
  write(parts: readonly Buffer[]): boolean;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  readonly bufferedBytes: number;
  /** Stops delivering input (backpressure). */
  pause(): void;
  resume(): void;
  /** Closes after everything written so far has been sent. */
  end(): void;
  /** Closes at once. */
  destroy(): void;
}

/** Addresses of one connection. */
export interface ConnectionInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
}

/** Per-connection bounds and timers, and the one target-wide memory budget. */
export interface SessionLimits {
  /** CmdSN window: commands a session may have outstanding (MaxCmdSN = ExpCmdSN + depth − 1 when idle). */
  queueDepth: number;
  /**
   * After writing a response, keep the event loop polling this long instead of sleeping (0: never).
   * On a virtual machine an idle loop parked in epoll takes tens of microseconds to wake (vCPU halt and
   * interrupt), while a depth-1 initiator sends its next command a few microseconds after the status:
   * a short spin catches it. The cost is bounded by this window per response and is zero when idle.
   */
  pollAfterResponseMs: number;
  /** Reading stops while executing I/O plus unsent output exceed this many bytes. */
  maxPendingBytes: number;
  /**
   * Bytes solicited by R2Ts and not yet executed, per connection; further R2Ts wait, except those of one
   * write at a time, which always gets all its data (else a write larger than this could never complete).
   */
  maxSolicitedBytes: number;
  /**
   * Target-wide: bytes all connections together hold — write data received or solicited and not yet
   * executed (immediate and unsolicited data as it arrives, an R2T's burst when it is sent), the write data
   * and read buffers of executing commands, and output queued for the socket. Over it, a connection that
   * holds anything stops reading (unless the initiator still owes it data for an open Data-Out sequence),
   * further R2Ts and command starts wait, and waiting connections are woken once the total falls to half.
   * So that nothing deadlocks, each connection may always start one command (when none of its own is
   * executing) and complete one write's R2Ts; the worst case is therefore this budget plus about one
   * command per connection, plus the unsolicited data (≤ FirstBurstLength each) of commands an initiator
   * sent ahead while the connection kept reading for an open sequence.
   */
  maxTargetPendingBytes: number;
  /** Largest ExpectedDataTransferLength accepted; larger commands fail with CHECK CONDITION. */
  maxCommandBytes: number;
  /** A login must complete within this time. */
  loginTimeoutMs: number;
  /** Idle time after which the target pings with a NOP-In; 0 disables keepalive. */
  nopIntervalMs: number;
  /** A connection silent for this long after a ping is dropped. */
  nopTimeoutMs: number;
  /** How long a Logout or shutdown waits for executing commands before answering anyway. */
  drainTimeoutMs: number;
  /** After asking an initiator that lost access to log out, drop its session if it is still there. */
  revokeGraceMs: number;
}

export const DEFAULT_SESSION_LIMITS: Readonly<SessionLimits> = Object.freeze({
  queueDepth: 128,
  pollAfterResponseMs: 0.05,
  maxPendingBytes: 64 * 1024 * 1024,
  maxSolicitedBytes: 32 * 1024 * 1024,
  maxTargetPendingBytes: 512 * 1024 * 1024,
  // The SCSI layer's own cap (64 MiB per command) plus room for an EDTL a little above the CDB's length.
  maxCommandBytes: 64 * 1024 * 1024 + 65536,
  loginTimeoutMs: 15_000,
  nopIntervalMs: 10_000,
  nopTimeoutMs: 30_000,
  drainTimeoutMs: 10_000,
  revokeGraceMs: 10_000,
});

/** Rate limiting of failed logins, by remote address. */
export interface LoginThrottleLike {
  /** Records a failed login and returns how long to wait before answering it (ms). */
  failure(address: string): number;
  success(address: string): void;
}

export type { ItNexus, ScsiResult };
