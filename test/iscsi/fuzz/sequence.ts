/**
 * Checks the numbering of what a target sends on one connection, as an initiator relies on it (RFC 7143
 * §4.2.2): every status-bearing PDU takes the next StatSN (no gaps, no repeats), R2Ts and target pings show
 * the next one without taking it, ExpCmdSN and MaxCmdSN never move back, and MaxCmdSN ≥ ExpCmdSN − 1.
 */
import type { DecodedPdu } from '../../../src/iscsi/pdu/index.js';

export class SequenceChecker {
  private nextStatSN: number | undefined;
  private expCmdSN: number | undefined;
  private maxCmdSN: number | undefined;
  /** The first few violations seen. */
  readonly errors: string[] = [];

  check(p: DecodedPdu): void {
    const err = (m: string) => {
      if (this.errors.length < 10) this.errors.push(`opcode 0x${p.opcode.toString(16)}: ${m}`);
    };
    if (!('statSN' in p) || typeof p.statSN !== 'number') return;
    const takes =
      p.opcode === 0x21 ||
      p.opcode === 0x22 ||
      p.opcode === 0x23 ||
      p.opcode === 0x24 ||
      p.opcode === 0x26 ||
      p.opcode === 0x32 ||
      p.opcode === 0x3f ||
      (p.opcode === 0x25 && p.statusPresent) ||
      (p.opcode === 0x20 && p.itt !== 0xffffffff);
    const shows = p.opcode === 0x31 || (p.opcode === 0x20 && p.itt === 0xffffffff);
    if (this.nextStatSN === undefined) {
      if (p.opcode === 0x23) this.nextStatSN = (p.statSN + 1) >>> 0;
    } else if (takes) {
      if (p.statSN !== this.nextStatSN) err(`StatSN ${p.statSN}, expected ${this.nextStatSN}`);
      this.nextStatSN = (p.statSN + 1) >>> 0;
    } else if (shows && p.statSN !== this.nextStatSN) {
      err(`StatSN ${p.statSN} shown, next is ${this.nextStatSN}`);
    }
    // Login responses count their own window; Data-In without status may leave these fields unset.
    if (p.opcode === 0x23 || !('expCmdSN' in p)) return;
    if (p.opcode === 0x25 && !p.statusPresent && p.expCmdSN === 0 && p.maxCmdSN === 0) return;
    const exp = p.expCmdSN >>> 0;
    const max = p.maxCmdSN >>> 0;
    if (this.expCmdSN !== undefined && ((exp - this.expCmdSN) | 0) < 0) {
      err(`ExpCmdSN went back ${this.expCmdSN} → ${exp}`);
    }
    if (this.maxCmdSN !== undefined && ((max - this.maxCmdSN) | 0) < 0) {
      err(`MaxCmdSN went back ${this.maxCmdSN} → ${max}`);
    }
    if (((max - exp) | 0) < -1) err(`MaxCmdSN ${max} < ExpCmdSN ${exp} − 1`);
    this.expCmdSN = exp;
    this.maxCmdSN = max;
  }
}
