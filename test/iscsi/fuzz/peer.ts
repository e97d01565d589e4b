/**
 * A fuzzing peer over a real TCP socket: sends raw bytes (whole, in pieces, or trickled), decodes what the
 * target answers without ever throwing (a target answer that does not decode is recorded: the target must
 * frame its output correctly whatever it was sent), and closes abruptly or politely.
 */
import { connect, type Socket } from 'node:net';
import { type DecodedPdu, PduDecoder } from '../../../src/iscsi/pdu/index.js';
import { SequenceChecker } from './sequence.js';

export class FuzzPeer {
  private readonly dec = new PduDecoder({ role: 'initiator', maxDataSegmentLength: 16 * 1024 * 1024 });
  private box: DecodedPdu[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  /** The target's output failed to decode (a framing bug on its side). */
  decodeError: string | undefined;
  received = 0;
  bytesIn = 0;
  /** Keep decoded PDUs (false: only count them, for floods). */
  keep = true;
  /** Numbering of the target's PDUs on this connection. */
  readonly sequence = new SequenceChecker();
  /** The last few PDUs decoded, so a framing error says what came before it. */
  private recent: string[] = [];
  private digests = { header: false, data: false };
  private armed: { header: boolean; data: boolean } | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      this.bytesIn += c.length;
      if (this.decodeError !== undefined) return;
      this.dec.push(c);
      try {
        for (let p = this.dec.next(); p; p = this.dec.next()) {
          this.received++;
          // Digests start with the PDU right after the final login response (RFC 7143 §13.1), which may sit
          // in this very chunk (an Async Message sent at once): switch before decoding it, as initiators do.
          const login = p as { transit?: boolean; nsg?: number; statusClass?: number };
          if (
            this.armed &&
            p.opcode === 0x23 &&
            login.transit &&
            login.nsg === 3 &&
            login.statusClass === 0
          ) {
            this.setDigests(this.armed);
            this.armed = undefined;
          }
          this.sequence.check(p);
          this.recent.push(`0x${p.opcode.toString(16)}/itt=${p.itt}/len=${p.data.length}`);
          if (this.recent.length > 4) this.recent.shift();
          if (this.keep) this.box.push(p);
          if (this.box.length > 1000) this.box.splice(0, 500);
        }
      } catch (err) {
        const d = `hd=${this.digests.header} dd=${this.digests.data}`;
        this.decodeError = `${(err as Error).message} [${d}; after ${this.recent.join(', ') || 'nothing'}; chunk ${c.length} B: ${c.subarray(0, 160).toString('hex')}]`;
      }
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static open(host: string, port: number, timeoutMs = 5000): Promise<FuzzPeer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.setNoDelay(true);
        resolve(new FuzzPeer(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  /** Digests to switch to when the final (successful) login response arrives. */
  armDigests(d: { header: boolean; data: boolean }): void {
    this.armed = { ...d };
  }

  /** Switches the decoder to the digests negotiated at login. */
  setDigests(d: { header: boolean; data: boolean }): void {
    this.digests = { ...d };
    this.dec.setDigests(d);
  }

  /** Writes bytes; resolves once the socket accepted them (or is gone). */
  send(b: Buffer): Promise<void> {
    if (this.closed || this.socket.destroyed || b.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      if (this.socket.write(b)) resolve();
      else {
        const done = () => {
          this.socket.off('drain', done);
          this.socket.off('close', done);
          resolve();
        };
        this.socket.once('drain', done);
        this.socket.once('close', done);
      }
    });
  }

  /** Writes bytes a few at a time with pauses (a slow or stalling initiator). */
  async trickle(b: Buffer, step: number, delayMs: number): Promise<void> {
    for (let off = 0; off < b.length && !this.closed; off += step) {
      await this.send(b.subarray(off, off + step));
      await sleep(delayMs);
    }
  }

  /** The next PDU, or undefined on close or timeout. */
  async next(timeoutMs: number): Promise<DecodedPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    while (this.box.length === 0 && !this.closed && Date.now() < deadline) {
      await this.wait(deadline - Date.now());
    }
    return this.box.shift();
  }

  /** Waits for a PDU matching `pred` (dropping others), or undefined. */
  async expect(pred: (p: DecodedPdu) => boolean, timeoutMs: number): Promise<DecodedPdu | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = await this.next(deadline - Date.now());
      if (!p) return undefined;
      if (pred(p)) return p;
    }
  }

  /** Everything received so far. */
  drain(): DecodedPdu[] {
    return this.box.splice(0);
  }

  /** Waits up to `ms` for the target to close the connection. */
  async waitClosed(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await this.wait(deadline - Date.now());
    return this.closed;
  }

  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  /** RST-style abrupt close. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Half-close (FIN), then destroy a little later. */
  end(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 200).unref();
  }

  private wait(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, Math.max(1, Math.min(ms, 100)));
      this.waiters.push(() => {
        clearTimeout(t);
        r();
      });
    });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
