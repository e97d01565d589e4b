/**
 * In-process fuzz harness: an IscsiTarget over the real SCSI layer and in-memory logical units, connections
 * driven through a fake transport that decodes everything the target writes (as an initiator would) and
 * records anything suspicious: undecodable output, internal errors logged by the session or SCSI layer,
 * unbounded buffering.
 */
import type { ChapCredentials } from '../../../src/exports/types.js';
import { type BackingStore, LogicalUnit } from '../../../src/iscsi/lu/index.js';
import { type DecodedPdu, type PduDecoder, ProtocolError } from '../../../src/iscsi/pdu/index.js';
import { ScsiTarget } from '../../../src/iscsi/scsi/index.js';
import {
  IscsiConnection,
  type IscsiLogger,
  IscsiTarget,
  type SessionLimits,
} from '../../../src/iscsi/session/index.js';
import { DecodingTransport } from '../session/helpers.js';
import type { LoginIdentities } from './login-gen.js';
import { SequenceChecker } from './sequence.js';

export const FUZZ_TARGET = 'iqn.2024-01.test.fuzz:target';
/** Allowed, no CHAP: LUN 0 = `fuzzLu`. */
export const FUZZ_INIT = 'iqn.2024-01.test.fuzz:open';
/** Allowed with (mutual) CHAP: LUN 0 = `guardedLu`. */
export const CHAP_INIT = 'iqn.2024-01.test.fuzz:chap';
export const CHAP_CREDS: ChapCredentials = {
  in_user: 'fuzzuser',
  in_pass: 'fuzz-secret-12',
  out_user: 'fuzztarget',
  out_pass: 'target-secret-34',
};
export const LU_BLOCKS = 2048;

/** The identities the login fuzzer plays with. */
export const IDS: LoginIdentities = {
  target: FUZZ_TARGET,
  open: FUZZ_INIT,
  chap: CHAP_INIT,
  chapUser: CHAP_CREDS.in_user!,
  chapSecret: CHAP_CREDS.in_pass!,
  targetUser: CHAP_CREDS.out_user!,
  targetSecret: CHAP_CREDS.out_pass!,
};

/** A sparse in-memory backing store (4 KiB pages) with hole punching and SEEK_DATA/SEEK_HOLE. */
export class MemoryBackingStore implements BackingStore {
  private readonly pages = new Map<number, Buffer>();
  closed = false;

  constructor(private readonly bytes: number) {}

  size(): number {
    return this.bytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length);
    const out = Buffer.alloc(length);
    for (let done = 0; done < length; ) {
      const pos = offset + done;
      const page = Math.floor(pos / 4096);
      const within = pos % 4096;
      const n = Math.min(4096 - within, length - done);
      this.pages.get(page)?.copy(out, done, within, within + n);
      done += n;
    }
    return out;
  }

  async write(offset: number, data: Buffer | readonly Buffer[]): Promise<void> {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
    this.check(offset, buf.length);
    for (let done = 0; done < buf.length; ) {
      const pos = offset + done;
      const page = Math.floor(pos / 4096);
      const within = pos % 4096;
      const n = Math.min(4096 - within, buf.length - done);
      let p = this.pages.get(page);
      if (!p) {
        p = Buffer.alloc(4096);
        this.pages.set(page, p);
      }
      buf.copy(p, within, done, done + n);
      done += n;
    }
  }

  async flush(): Promise<void> {}

  async punchHole(offset: number, length: number): Promise<void> {
    this.check(offset, length);
    for (let pos = offset; pos < offset + length; ) {
      const page = Math.floor(pos / 4096);
      const within = pos % 4096;
      const n = Math.min(4096 - within, offset + length - pos);
      const p = this.pages.get(page);
      if (p) {
        if (within === 0 && n === 4096) this.pages.delete(page);
        else p.fill(0, within, within + n);
      }
      pos += n;
    }
  }

  async seekData(offset: number): Promise<number> {
    if (offset >= this.bytes) return -1;
    for (let page = Math.floor(offset / 4096); page * 4096 < this.bytes; page++) {
      if (this.pages.has(page)) return Math.max(offset, page * 4096);
    }
    return -1;
  }

  async seekHole(offset: number): Promise<number> {
    if (offset >= this.bytes) return -1;
    for (let page = Math.floor(offset / 4096); page * 4096 < this.bytes; page++) {
      if (!this.pages.has(page)) return Math.max(offset, page * 4096);
    }
    return this.bytes;
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** The SCSI layer promises in-range requests only: a request outside is a bug worth failing on. */
  private check(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new Error(`backing store: bad request offset=${offset} length=${length}`);
    }
    if (offset + length > this.bytes) {
      throw new Error(
        `backing store: request past the end (offset=${offset} length=${length} size=${this.bytes})`,
      );
    }
  }
}

/** Every warning the session and SCSI layers log, for checks on internal errors. */
export class RecordingLogger implements IscsiLogger {
  readonly warnings: { obj: object; msg: string }[] = [];
  /** How often each message was logged at warn level. */
  readonly counts = new Map<string, number>();
  debug(): void {}
  info(): void {}
  warn(obj: object, msg: string): void {
    this.counts.set(msg, (this.counts.get(msg) ?? 0) + 1);
    this.warnings.push({ obj, msg });
    if (this.warnings.length > 10000) this.warnings.splice(0, 5000);
  }
  /** Messages that mean an exception escaped somewhere it should not have. */
  internalErrors(): { obj: object; msg: string }[] {
    return this.warnings.filter(
      (w) =>
        w.msg.startsWith('internal error') ||
        w.msg === 'SCSI command failed' ||
        w.msg === 'SCSI command failed unexpectedly' ||
        w.msg === 'task management failed' ||
        (w.msg === 'malformed iSCSI PDU: dropping the connection' &&
          (w.obj as { reason?: string }).reason === 'internal'),
    );
  }
}

export interface FuzzWorld {
  target: IscsiTarget;
  scsi: ScsiTarget;
  fuzzLu: LogicalUnit;
  guardedLu: LogicalUnit;
  guardedStore: MemoryBackingStore;
  log: RecordingLogger;
}

/** A target with FUZZ_INIT (open) on its own LU and CHAP_INIT (CHAP) on a guarded one. */
export function makeWorld(limits: Partial<SessionLimits> = {}): FuzzWorld {
  const log = new RecordingLogger();
  const scsi = new ScsiTarget({ targetName: FUZZ_TARGET, logger: log });
  const fuzzLu = new LogicalUnit({
    backing: new MemoryBackingStore(LU_BLOCKS * 512),
    uuid: '6a1f0000-0000-4000-8000-000000000001',
  });
  const guardedStore = new MemoryBackingStore(LU_BLOCKS * 512);
  const guardedLu = new LogicalUnit({ backing: guardedStore, uuid: '6a1f0000-0000-4000-8000-000000000002' });
  scsi.setLunMap(FUZZ_INIT, new Map([[0, fuzzLu]]));
  scsi.setLunMap(CHAP_INIT, new Map([[0, guardedLu]]));
  const target = new IscsiTarget({
    targetName: FUZZ_TARGET,
    scsi,
    logger: log,
    limits: { nopIntervalMs: 0, loginTimeoutMs: 60_000, drainTimeoutMs: 200, revokeGraceMs: 1000, ...limits },
  });
  target.setAccess([
    [FUZZ_INIT, { allowed: true, auth: null }],
    [CHAP_INIT, { allowed: true, auth: CHAP_CREDS }],
  ]);
  return { target, scsi, fuzzLu, guardedLu, guardedStore, log };
}

/** Transport that decodes the target's output as an initiator and keeps count of what it holds. */
export class FuzzTransport extends DecodingTransport {
  /** Whether write() reports backpressure (a peer that does not read). */
  congested = false;
  outBytes = 0;
  readonly received: DecodedPdu[] = [];
  /** Output the initiator side could not decode: the target framed something wrong. */
  outputErrors: string[] = [];
  keep = true;
  private readonly sequence = new SequenceChecker();

  write(parts: readonly Buffer[]): boolean {
    let n = 0;
    for (const p of parts) n += p.length;
    this.outBytes += n;
    if (this.outputErrors.length === 0) {
      this.decoder.push(Buffer.concat(parts));
      try {
        for (let p = this.decoder.next(); p; p = this.decoder.next()) {
          this.sequence.check(p);
          if (this.keep) this.received.push(p);
          if (this.received.length > 2000) this.received.splice(0, 1000);
        }
      } catch (err) {
        this.outputErrors.push((err as Error).message);
      }
    }
    return !this.congested;
  }
  // Like a real socket, destroy() reports the close to the connection (the session tests' transport does not).
  override destroy(): void {
    super.destroy();
    queueMicrotask(() => this.conn.transportClosed());
  }
  take(): DecodedPdu[] {
    return this.received.splice(0);
  }

  /** Target PDUs that broke the numbering rules (RFC 7143 §4.2.2). */
  get sequenceErrors(): readonly string[] {
    return this.sequence.errors;
  }
}

/** One fuzzed connection to the world's target. */
export function connect(world: FuzzWorld): { conn: IscsiConnection; t: FuzzTransport } {
  const t = new FuzzTransport();
  const conn = new IscsiConnection(world.target, t, {
    remoteAddress: '192.0.2.7',
    remotePort: 40000,
    localAddress: '192.0.2.1',
    localPort: 3260,
  });
  t.conn = conn;
  return { conn, t };
}

/** Internal state of a connection, read for the boundedness checks (private fields, by name). */
export function internals(conn: IscsiConnection): {
  state: string;
  decoderBuffered: number;
  tasks: number;
  early: number;
  outBytes: number;
  terminated: number;
  abortOnArrival: number;
} {
  const c = conn as unknown as {
    phase: string;
    inputHeld: boolean;
    paused: boolean;
    closing: boolean;
    decoder: PduDecoder;
    tasks: Map<number, unknown>;
    early: Map<number, unknown>;
    outBytes: number;
    terminated: Set<number>;
    abortOnArrival: Set<number>;
  };
  return {
    state: `${c.phase}${c.inputHeld ? ' held' : ''}${c.paused ? ' paused' : ''}${c.closing ? ' closing' : ''}`,
    decoderBuffered: c.decoder.bufferedBytes,
    tasks: c.tasks.size,
    early: c.early.size,
    outBytes: c.outBytes,
    terminated: c.terminated.size,
    abortOnArrival: c.abortOnArrival.size,
  };
}

/** Lets promise callbacks and setImmediate/timer work run. */
export function tick(ms = 0): Promise<void> {
  return new Promise((r) => (ms > 0 ? setTimeout(r, ms) : setImmediate(r)));
}

/** Whether an error is one the decoder is allowed to throw. */
export function isTypedDecodeError(err: unknown): err is ProtocolError {
  return err instanceof ProtocolError && typeof err.reason === 'string' && typeof err.fatal === 'boolean';
}
