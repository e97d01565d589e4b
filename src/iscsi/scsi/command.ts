import type { LogicalUnit } from '../lu/logical-unit.js';
import type { AscPair } from './constants.js';
import { invalidField, lbaOutOfRange } from './sense.js';

/** What the target offers the command handlers beyond the command itself. */
export interface TargetServices {
  readonly relativeTargetPort: number;
  readonly targetPortGroup: number;
  /** iSCSI target name, for the SCSI name string designator; absent when the transport did not say. */
  readonly targetName: string | undefined;
  /** Sorted LUN numbers mapped for the initiator of `nexusKey`. */
  lunsOf(nexusKey: string): number[];
  /** The LUs the initiator of `nexusKey` may reach (EXTENDED COPY may only name these). */
  lusOf(nexusKey: string): LogicalUnit[];
  /** Remembers the outcome of an EXTENDED COPY for RECEIVE COPY RESULTS (per nexus and list identifier). */
  recordCopy(nexusKey: string, listId: number, outcome: CopyOutcome): void;
  /** The remembered outcome of an EXTENDED COPY, if any. */
  copyOutcome(nexusKey: string, listId: number): CopyOutcome | undefined;
  /** Pops the oldest pending unit attention of the nexus for `lun` (REQUEST SENSE reports it). */
  takeUnitAttention(nexusKey: string, lun: number): AscPair | undefined;
  /** Queues a unit attention for every nexus that reaches `lu`, except `exceptNexusKey`. */
  unitAttentionForLu(lu: LogicalUnit, asc: AscPair, exceptNexusKey?: string): void;
  /** Queues a unit attention on `lu` for the given nexuses (initiator-port keys) only. */
  unitAttentionForNexuses(lu: LogicalUnit, nexusKeys: Iterable<string>, asc: AscPair): void;
  /** Aborts the given nexuses' tasks on `lu` (PREEMPT AND ABORT) and waits for them to finish. */
  abortTasksOf(lu: LogicalUnit, nexusKeys: Iterable<string>, exceptTask: unknown): Promise<void>;
}

/** What RECEIVE COPY RESULTS reports about a finished EXTENDED COPY. */
export interface CopyOutcome {
  ok: boolean;
  segmentsProcessed: number;
  bytes: number;
}

/** Everything a handler needs about the command it runs, when the LUN may map no LU. */
export interface LunlessContext {
  readonly services: TargetServices;
  /** Initiator-port key of the I_T nexus ("iqn…,i,0x<isid>"). */
  readonly nexusKey: string;
  readonly lun: number;
  /** The addressed LU, if the initiator's LUN map has one at this LUN. */
  readonly lu: LogicalUnit | undefined;
  readonly cdb: Buffer;
  /**
   * Data-Out as received (at most the expected transfer length); empty when none. When it arrived as several
   * buffers this is assembled (copied) on first use; a handler that can take the pieces uses dataOutParts.
   */
  readonly dataOut: Buffer;
  /** The Data-Out buffers back to back when the transport passed a list of them, else undefined. */
  readonly dataOutParts: readonly Buffer[] | undefined;
  readonly expectedLength: number;
  /** Opaque task record, for PREEMPT AND ABORT not to abort its own command. */
  readonly task: unknown;
  /** True once a task management function aborted this command; long operations poll it. */
  readonly aborted: () => boolean;
}

/** Everything a handler needs about the command it runs on a mapped LU. */
export interface CommandContext extends LunlessContext {
  readonly lu: LogicalUnit;
}

/** A handler's success: Data-In (if any) and the byte count the command transfers in its own direction. */
export interface Reply {
  data?: Buffer[];
  transferLength: number;
}

export type Handler = (ctx: CommandContext) => Promise<Reply> | Reply;
export type LunlessHandler = (ctx: LunlessContext) => Promise<Reply> | Reply;

/** How a command fares under reservations held by another I_T nexus. */
export type ReservationAccess = 'allowed' | 'read' | 'write';

/** One supported command (opcode, or opcode plus service action). */
export interface CommandSpec {
  name: string;
  opcode: number;
  /** Service action (byte 1 bits 4-0) for opcodes that have them. */
  serviceAction?: number;
  cdbLength: number;
  /** CDB usage data for REPORT SUPPORTED OPERATION CODES: byte 0 is the opcode, then the bits we look at. */
  usage: readonly number[];
  /** Persistent-reservation class (SPC-4 / SBC-4 tables): 'read' conflicts under exclusive-access types. */
  pr: ReservationAccess;
  /** Allowed while another nexus holds a SCSI-2 reservation. */
  scsi2Allowed?: boolean;
  /** Neither reports nor clears unit attentions (INQUIRY, REPORT LUNS, REQUEST SENSE). */
  noUnitAttention?: boolean;
  /** Present only on LUs for which this returns true (e.g. UNMAP needs thin provisioning). */
  available?: (lu: LogicalUnit) => boolean;
  handler: Handler;
  /** Runs instead of `handler` on a LUN that maps no LU (REPORT LUNS, INQUIRY); without it: 25/00. */
  lunless?: LunlessHandler;
}

/** A Data-In reply cut to the allocation length. */
export function dataIn(buf: Buffer, allocationLength: number): Reply {
  const n = Math.min(buf.length, allocationLength);
  return { data: n > 0 ? [buf.subarray(0, n)] : [], transferLength: n };
}

/** A reply with no data. */
export const NO_DATA: Reply = { transferLength: 0 };

/** Reads a 64-bit big-endian LBA; values past 2^53 lose precision but stay past any real capacity. */
export function u64(cdb: Buffer, offset: number): number {
  // Two 32-bit halves: the same value as Number(readBigUInt64BE()) without a BigInt per READ(16)/WRITE(16).
  return cdb.readUInt32BE(offset) * 0x1_0000_0000 + cdb.readUInt32BE(offset + 4);
}

/** Checks that [lba, lba+count) lies inside the LU (21/00 otherwise). */
export function checkRange(lu: LogicalUnit, lba: number, count: number): void {
  if (lba + count > lu.capacity || lba > lu.capacity) throw lbaOutOfRange();
}

/** Rejects non-zero bits of `mask` in CDB byte `byte` with INVALID FIELD IN CDB pointing at the first one. */
export function reserved(cdb: Buffer, byte: number, mask = 0xff): void {
  const bad = cdb[byte]! & mask;
  if (bad !== 0) throw invalidField(byte, 31 - Math.clz32(bad));
}
