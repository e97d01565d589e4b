/**
 * A minimal iSCSI initiator over a real TCP socket, built from the PDU codec: enough to log in, run SCSI
 * commands and watch for Async Messages. Tests use it where the real initiators cannot show what we need
 * (raw VPD bytes, unit attentions on a session kept open while exports change).
 */
import { connect, type Socket } from 'node:net';
import type { KeyValue } from '../../../src/iscsi/login/index.js';
import {
  type DecodedPdu,
  encodeLogoutRequest,
  encodeNopOut,
  encodeScsiCommand,
  lunField,
  PduDecoder,
} from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';

export interface WireResult {
  status: number;
  sense?: Buffer;
  data: Buffer;
  residual?: { underflow: boolean; overflow: boolean; count: number };
}

/** Operational keys offered by the wire client. */
export const WIRE_OFFER: KeyValue[] = [
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['InitialR2T', 'No'],
  ['ImmediateData', 'Yes'],
  ['MaxBurstLength', '262144'],
  ['FirstBurstLength', '262144'],
  ['MaxRecvDataSegmentLength', '65536'],
  ['ErrorRecoveryLevel', '0'],
];

export class Wire {
  private readonly dec = new PduDecoder({ role: 'initiator', maxDataSegmentLength: 1 << 24 });
  private box: DecodedPdu[] = [];
  private waiters: (() => void)[] = [];
  /** Async Messages received, in order. */
  readonly asyncs: Extract<DecodedPdu, { opcode: 0x32 }>[] = [];
  closed = false;
  cmdSN = 1;
  itt = 1;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.dec.push(c);
      for (let p = this.dec.next(); p; p = this.dec.next()) {
        if (p.opcode === 0x32) this.asyncs.push(p);
        else this.box.push(p);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static open(host: string, port: number): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port }, () => resolve(new Wire(s)));
      s.once('error', reject);
    });
  }

  send(parts: Buffer[]): void {
    this.socket.write(Buffer.concat(parts));
  }

  /** The next PDU (Async Messages are kept aside), or undefined on close or timeout. */
  async next(timeoutMs = 5000): Promise<DecodedPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.box.length === 0 && !this.closed && Date.now() < deadline) {
      await this.wait(Math.min(50, deadline - Date.now()));
    }
    return this.box.shift();
  }

  /** Waits until an Async Message arrives (or the timeout). */
  async nextAsync(timeoutMs = 5000): Promise<Extract<DecodedPdu, { opcode: 0x32 }> | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.asyncs.length === 0 && !this.closed && Date.now() < deadline) {
      await this.wait(Math.min(50, deadline - Date.now()));
    }
    return this.asyncs.shift();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, Math.max(1, ms));
      this.waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }

  /** One-PDU login straight to full feature phase; returns the final Login Response. */
  async login(o: {
    initiator: string;
    target?: string;
    isid?: Buffer;
    discovery?: boolean;
  }): Promise<DecodedPdu> {
    const keys: KeyValue[] = [
      ['InitiatorName', o.initiator],
      ['SessionType', o.discovery ? 'Discovery' : 'Normal'],
    ];
    if (!o.discovery) keys.push(['TargetName', o.target ?? '']);
    keys.push(...(o.discovery ? [['MaxRecvDataSegmentLength', '65536'] as KeyValue] : WIRE_OFFER));
    const isid = o.isid ?? Buffer.from('40000000abcd', 'hex');
    this.send([loginPdu(keys, { isid, itt: this.itt++, cmdSN: this.cmdSN })]);
    const rsp = await this.next();
    if (rsp?.opcode !== 0x23) throw new Error('no login response');
    return rsp;
  }

  /** Runs one command (read or no data) and gathers its Data-In and status. */
  async command(cdb: Buffer, o: { lun?: number; read?: number } = {}): Promise<WireResult> {
    const itt = this.itt++;
    this.send(
      encodeScsiCommand({
        final: true,
        read: (o.read ?? 0) > 0,
        attr: 1,
        lun: lunField(o.lun ?? 0),
        itt,
        expectedDataTransferLength: o.read ?? 0,
        cmdSN: this.cmdSN++,
        expStatSN: 0,
        cdb,
      }),
    );
    const data: Buffer[] = [];
    for (;;) {
      const p = await this.next();
      if (!p) throw new Error('connection closed or timed out during a command');
      if (p.opcode === 0x25 && p.itt === itt) {
        data.push(p.data);
        if (p.statusPresent) return { status: p.status ?? 0, data: Buffer.concat(data) };
      } else if (p.opcode === 0x21 && p.itt === itt) {
        const senseLen = p.data.length >= 2 ? p.data.readUInt16BE(0) : 0;
        return {
          status: p.status,
          data: Buffer.concat(data),
          ...(senseLen > 0 ? { sense: p.data.subarray(2, 2 + senseLen) } : {}),
          residual: {
            underflow: p.underflow === true,
            overflow: p.overflow === true,
            count: p.residualCount ?? 0,
          },
        };
      }
    }
  }

  /** TEST UNIT READY until GOOD; returns the [ASC, ASCQ] of each unit attention seen on the way. */
  async drainUnitAttentions(lun = 0): Promise<string[]> {
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await this.command(Buffer.alloc(6), { lun });
      if (r.status === 0) return seen;
      seen.push(r.sense ? r.sense.subarray(12, 14).toString('hex') : `status ${r.status}`);
    }
    return seen;
  }

  nop(): void {
    this.send(
      encodeNopOut({
        immediate: true,
        lun: 0n,
        itt: this.itt++,
        ttt: 0xffffffff,
        cmdSN: this.cmdSN,
        expStatSN: 0,
      }),
    );
  }

  async logout(): Promise<void> {
    this.send(
      encodeLogoutRequest({
        immediate: true,
        reasonCode: 0,
        itt: this.itt++,
        cid: 1,
        cmdSN: this.cmdSN,
        expStatSN: 0,
      }),
    );
    await this.next();
    this.socket.destroy();
  }
}
