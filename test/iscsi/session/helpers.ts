import type { ChapCredentials } from '../../../src/exports/types.js';
import { encodeText, type KeyValue, parseText } from '../../../src/iscsi/login/index.js';
import {
  type DecodedPdu,
  type DigestOptions,
  encodeDataOut,
  encodeLogoutRequest,
  encodeNopOut,
  encodeScsiCommand,
  encodeTaskMgmtRequest,
  encodeTextRequest,
  lunField,
  PduDecoder,
} from '../../../src/iscsi/pdu/index.js';
import type { ExecuteOptions, ItNexus, ScsiResult } from '../../../src/iscsi/scsi/index.js';
import {
  type ConnectionTransport,
  IscsiConnection,
  IscsiTarget,
  type IscsiTargetOptions,
  type ScsiExecutor,
  type SessionLimits,
} from '../../../src/iscsi/session/index.js';
import { loginPdu } from '../pdu/fixtures.js';

export const TARGET = 'iqn.2024-01.test:target';
export const INIT = 'iqn.2024-01.test:host1';
export const INIT2 = 'iqn.2024-01.test:host2';
export const ISID = Buffer.from('400001370001', 'hex');

/**
 * A fake transport that records flow control and closing and has a decoder for the target's output, as an
 * initiator would; subclasses decide what write() does with the bytes.
 */
export abstract class DecodingTransport implements ConnectionTransport {
  conn!: IscsiConnection;
  bufferedBytes = 0;
  paused = false;
  ended = false;
  destroyed = false;
  readonly decoder = new PduDecoder({ role: 'initiator', maxDataSegmentLength: 16 * 1024 * 1024 });

  abstract write(parts: readonly Buffer[]): boolean;
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  end(): void {
    this.ended = true;
    queueMicrotask(() => this.conn.transportClosed());
  }
  destroy(): void {
    this.destroyed = true;
  }
}

/** Records everything the connection writes and decodes it as an initiator would. */
export class FakeTransport extends DecodingTransport {
  writable = true;
  writes = 0;
  /** Raw buffer lists as handed to write(), to check zero-copy. */
  readonly rawWrites: (readonly Buffer[])[] = [];

  write(parts: readonly Buffer[]): boolean {
    this.writes++;
    this.rawWrites.push(parts);
    this.decoder.push(Buffer.concat(parts));
    return this.writable;
  }
}

/** Per-call record of the scripted executor. */
export interface ExecCall {
  nexus: ItNexus;
  lun: number;
  cdb: Buffer;
  dataOut: Buffer;
  expectedLength: number;
  opts: ExecuteOptions;
  aborted: boolean;
  done: boolean;
  resolve(r: ScsiResult): void;
}

/** Result with the given data pieces (cut to expectedLength like the SCSI layer) and transfer length. */
export function dataResult(pieces: Buffer[], expectedLength: number, transferLength?: number): ScsiResult {
  const out: Buffer[] = [];
  let left = expectedLength;
  for (const p of pieces) {
    if (left <= 0) break;
    const piece = p.length <= left ? p : p.subarray(0, left);
    out.push(piece);
    left -= piece.length;
  }
  const total = pieces.reduce((n, b) => n + b.length, 0);
  return {
    status: 0,
    data: out,
    dataLength: expectedLength - left,
    transferLength: transferLength ?? total,
  };
}

export const GOOD: ScsiResult = { status: 0, data: [], dataLength: 0, transferLength: 0 };

/**
 * A ScsiExecutor under test control. In 'auto' mode `handler` answers at once; in 'manual' mode calls wait
 * until the test resolves them (to complete commands out of order or keep them executing during a TMF).
 */
export class ScriptedScsi implements ScsiExecutor {
  mode: 'auto' | 'manual' = 'auto';
  calls: ExecCall[] = [];
  tmfs: { fn: number; lun: number; ref: number | undefined }[] = [];
  opened: ItNexus[] = [];
  closed: ItNexus[] = [];
  handler: (c: ExecCall) => ScsiResult = (c) => defaultHandler(c);
  tmfResponse: (fn: number, ref: number | undefined) => number = () => 0;

  execute(
    nexus: ItNexus,
    lun: number,
    cdb: Buffer,
    dataOut: Buffer | readonly Buffer[] = Buffer.alloc(0),
    expectedLength = 0,
    opts: ExecuteOptions = {},
  ): Promise<ScsiResult> {
    return new Promise((resolve) => {
      const call: ExecCall = {
        nexus,
        lun,
        cdb: Buffer.from(cdb),
        // Write data may come as the list of buffers it arrived in (see ScsiExecutor.execute).
        dataOut: Buffer.isBuffer(dataOut) ? Buffer.from(dataOut) : Buffer.concat(dataOut),
        expectedLength,
        opts,
        aborted: false,
        done: false,
        resolve: (r) => {
          call.done = true;
          resolve(call.aborted ? { ...r, aborted: true } : r);
        },
      };
      this.calls.push(call);
      if (this.mode === 'auto') call.resolve(this.handler(call));
    });
  }

  async taskManagement(_n: ItNexus, fn: number, lun: number, ref?: number): Promise<number> {
    this.tmfs.push({ fn, lun, ref });
    const victims = this.calls.filter((c) => !c.done && (fn !== 1 || c.opts.taskTag === ref));
    if (fn === 1 && victims.length === 0) return 1;
    for (const v of victims) v.aborted = true;
    return this.tmfResponse(fn, ref);
  }

  nexusOpened(n: ItNexus): void {
    this.opened.push(n);
  }
  nexusClosed(n: ItNexus): void {
    this.closed.push(n);
  }
}

/** READ(10)/(16): a pattern of the CDB's length; WRITE: GOOD with the CDB's length as transfer length. */
export function defaultHandler(c: ExecCall): ScsiResult {
  const op = c.cdb[0]!;
  const blocks =
    op === 0x28 || op === 0x2a
      ? c.cdb.readUInt16BE(7)
      : op === 0x88 || op === 0x8a
        ? c.cdb.readUInt32BE(10)
        : 0;
  const bytes = blocks * 512;
  if (op === 0x28 || op === 0x88) return dataResult([pattern(bytes, 7)], c.expectedLength, bytes);
  if (op === 0x2a || op === 0x8a) return { status: 0, data: [], dataLength: 0, transferLength: bytes };
  return GOOD;
}

export function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

export function read10(lba: number, blocks: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = 0x28;
  b.writeUInt32BE(lba, 2);
  b.writeUInt16BE(blocks, 7);
  return b;
}

export function write10(lba: number, blocks: number): Buffer {
  const b = read10(lba, blocks);
  b[0] = 0x2a;
  return b;
}

export const TUR = Buffer.alloc(6);

export interface LoginOpts {
  name?: string;
  isid?: Buffer;
  tsih?: number;
  type?: 'Normal' | 'Discovery';
  keys?: KeyValue[];
  /** Header/data digests for the full feature phase (offered as CRC32C only). */
  digests?: DigestOptions;
}

/** Operational keys like libiscsi's offer, adjustable per test. */
export function offer(over: Record<string, string> = {}): KeyValue[] {
  const base: Record<string, string> = {
    HeaderDigest: 'None',
    DataDigest: 'None',
    InitialR2T: 'No',
    ImmediateData: 'Yes',
    MaxBurstLength: '262144',
    FirstBurstLength: '65536',
    MaxOutstandingR2T: '1',
    MaxRecvDataSegmentLength: '8192',
    ErrorRecoveryLevel: '0',
    DefaultTime2Retain: '0',
    ...over,
  };
  return Object.entries(base);
}

/** A scripted initiator talking to one IscsiConnection over a FakeTransport. */
export class TestInitiator {
  readonly transport = new FakeTransport();
  readonly conn: IscsiConnection;
  cmdSN = 1;
  itt = 0x100;
  digests: DigestOptions = {};
  private inbox: DecodedPdu[] = [];

  constructor(readonly target: IscsiTarget) {
    this.conn = new IscsiConnection(target, this.transport, {
      remoteAddress: '192.0.2.1',
      remotePort: 50000,
      localAddress: '192.0.2.100',
      localPort: 3260,
    });
    this.transport.conn = this.conn;
  }

  /** Sends raw bytes (or encoded PDU parts). */
  send(...pdus: (Buffer | Buffer[])[]): void {
    const bufs = pdus.flatMap((p) => (Buffer.isBuffer(p) ? [p] : p));
    this.conn.receive(Buffer.concat(bufs));
  }

  /** Every PDU received so far and not yet taken. */
  received(): DecodedPdu[] {
    for (let p = this.transport.decoder.next(); p; p = this.transport.decoder.next()) this.inbox.push(p);
    return this.inbox;
  }

  /** Takes all received PDUs. */
  take(): DecodedPdu[] {
    const all = this.received();
    this.inbox = [];
    return all;
  }

  /** Waits until `pred` matches a received PDU and takes it (with everything before it). */
  async expect<T extends DecodedPdu>(pred: (p: DecodedPdu) => p is T, timeoutMs?: number): Promise<T>;
  async expect(pred: (p: DecodedPdu) => boolean, timeoutMs?: number): Promise<DecodedPdu>;
  async expect(pred: (p: DecodedPdu) => boolean, timeoutMs = 2000): Promise<DecodedPdu> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const box = this.received();
      const i = box.findIndex(pred);
      if (i >= 0) {
        const p = box[i]!;
        this.inbox.splice(0, i + 1);
        return p;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `expected PDU not received; got opcodes ${box.map((p) => p.opcode.toString(16)).join(',')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  /** Lets pending promise callbacks and timers run. */
  async settle(ms = 5): Promise<void> {
    await new Promise((r) => setTimeout(r, ms));
  }

  /** One-PDU login (operational stage straight to full feature) with the given keys. */
  async login(o: LoginOpts = {}): Promise<DecodedPdu> {
    const type = o.type ?? 'Normal';
    const keys: KeyValue[] = [
      ['InitiatorName', o.name ?? INIT],
      ['SessionType', type],
    ];
    if (type === 'Normal') keys.push(['TargetName', TARGET]);
    const digestKeys: Record<string, string> = {};
    if (o.digests?.headerDigest) digestKeys.HeaderDigest = 'CRC32C';
    if (o.digests?.dataDigest) digestKeys.DataDigest = 'CRC32C';
    keys.push(
      ...(o.keys ?? (type === 'Normal' ? offer(digestKeys) : [['MaxRecvDataSegmentLength', '8192']])),
    );
    this.send(
      loginPdu(keys, { isid: o.isid ?? ISID, tsih: o.tsih ?? 0, itt: this.itt++, cmdSN: this.cmdSN }),
    );
    const rsp = await this.expect((p) => p.opcode === 0x23);
    if (rsp.opcode === 0x23 && rsp.statusClass === 0 && rsp.nsg === 3 && rsp.transit) {
      this.digests = o.digests ?? {};
      this.transport.decoder.setDigests({
        header: this.digests.headerDigest === true,
        data: this.digests.dataDigest === true,
      });
    }
    return rsp;
  }

  /** A SCSI command; returns its ITT. Non-immediate commands take the next CmdSN unless one is given. */
  command(
    cdb: Buffer,
    o: {
      edtl?: number;
      read?: boolean;
      write?: boolean;
      data?: Buffer;
      final?: boolean;
      immediate?: boolean;
      cmdSN?: number;
      itt?: number;
      lun?: number;
    } = {},
  ): number {
    const itt = o.itt ?? this.itt++;
    const cmdSN = o.cmdSN ?? (o.immediate ? this.cmdSN : this.cmdSN++);
    this.send(
      encodeScsiCommand(
        {
          immediate: o.immediate ?? false,
          final: o.final ?? true,
          read: o.read ?? false,
          write: o.write ?? false,
          attr: 1,
          lun: lunField(o.lun ?? 0),
          itt,
          expectedDataTransferLength: o.edtl ?? 0,
          cmdSN,
          expStatSN: 0,
          cdb,
          ...(o.data ? { data: o.data } : {}),
        },
        this.digests,
      ),
    );
    return itt;
  }

  dataOut(o: {
    itt: number;
    ttt?: number;
    dataSN: number;
    offset: number;
    data: Buffer;
    final?: boolean;
  }): void {
    this.send(
      encodeDataOut(
        {
          final: o.final ?? false,
          lun: lunField(0),
          itt: o.itt,
          ttt: o.ttt ?? 0xffffffff,
          expStatSN: 0,
          dataSN: o.dataSN,
          bufferOffset: o.offset,
          data: o.data,
        },
        this.digests,
      ),
    );
  }

  nop(data?: Buffer, immediate = true): number {
    const itt = this.itt++;
    this.send(
      encodeNopOut(
        {
          immediate,
          lun: 0n,
          itt,
          ttt: 0xffffffff,
          cmdSN: immediate ? this.cmdSN : this.cmdSN++,
          expStatSN: 0,
          ...(data ? { data } : {}),
        },
        this.digests,
      ),
    );
    return itt;
  }

  tmf(fn: number, o: { ref?: number; refCmdSN?: number; lun?: number } = {}): number {
    const itt = this.itt++;
    this.send(
      encodeTaskMgmtRequest(
        {
          immediate: true,
          function: fn,
          lun: lunField(o.lun ?? 0),
          itt,
          referencedTaskTag: o.ref ?? 0xffffffff,
          cmdSN: this.cmdSN,
          expStatSN: 0,
          refCmdSN: o.refCmdSN ?? 0,
          expDataSN: 0,
        },
        this.digests,
      ),
    );
    return itt;
  }

  text(pairs: KeyValue[], o: { ttt?: number; final?: boolean; itt?: number } = {}): number {
    const itt = o.itt ?? this.itt++;
    this.send(
      encodeTextRequest(
        {
          immediate: true,
          final: o.final ?? true,
          continue: false,
          lun: 0n,
          itt,
          ttt: o.ttt ?? 0xffffffff,
          cmdSN: this.cmdSN,
          expStatSN: 0,
          data: encodeText(pairs),
        },
        this.digests,
      ),
    );
    return itt;
  }

  logout(reasonCode = 0): number {
    const itt = this.itt++;
    this.send(
      encodeLogoutRequest(
        { immediate: true, reasonCode, itt, cid: 1, cmdSN: this.cmdSN, expStatSN: 0 },
        this.digests,
      ),
    );
    return itt;
  }
}

export interface Setup {
  target: IscsiTarget;
  scsi: ScriptedScsi;
  ini: TestInitiator;
}

/** A target with INIT allowed (no CHAP) over a scripted executor, and one initiator logged in. */
export async function setup(
  o: {
    limits?: Partial<SessionLimits>;
    keys?: KeyValue[];
    digests?: DigestOptions;
    target?: Partial<IscsiTargetOptions>;
    auth?: ChapCredentials | null;
    login?: boolean;
  } = {},
): Promise<Setup> {
  const scsi = new ScriptedScsi();
  const target = new IscsiTarget({
    targetName: TARGET,
    scsi,
    limits: { nopIntervalMs: 0, ...o.limits },
    ...o.target,
  });
  target.setAccess([
    [INIT, { allowed: true, auth: o.auth ?? null }],
    [INIT2, { allowed: true, auth: null }],
  ]);
  const ini = new TestInitiator(target);
  if (o.login !== false) {
    const rsp = await ini.login({
      ...(o.keys ? { keys: o.keys } : {}),
      ...(o.digests ? { digests: o.digests } : {}),
    });
    if (rsp.opcode !== 0x23 || rsp.statusClass !== 0) throw new Error('login failed in setup');
  }
  return { target, scsi, ini };
}

/** key=value text of a PDU's data. */
export function textOf(p: DecodedPdu): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [k, v] of parseText(p.data)) {
    out[k] ??= [];
    out[k].push(v);
  }
  return out;
}
