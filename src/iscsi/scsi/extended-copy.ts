import type { LogicalUnit } from '../lu/logical-unit.js';
import { type CommandContext, dataIn, NO_DATA, type Reply } from './command.js';
import { Asc, type AscPair, Op, SenseKey, ServiceAction } from './constants.js';
import {
  checkCondition,
  invalidField,
  invalidParameter,
  parameterListLengthError,
  reservationConflict,
  writeProtected,
} from './sense.js';

/** Copy-manager limits, reported by RECEIVE COPY RESULTS and the Third-party Copy VPD page. */
export const MAX_CSCD_DESCRIPTORS = 8;
export const MAX_SEGMENT_DESCRIPTORS = 64;
/** Bytes of CSCD plus segment descriptors one EXTENDED COPY may carry. */
export const MAX_DESCRIPTOR_LIST_LENGTH = 2048;
/** A block→block segment moves at most 65535 blocks (its length field is two bytes). */
const MAX_SEGMENT_BLOCKS = 0xffff;
/** Bytes moved per read/write step, so a segment never needs more memory than this. */
const COPY_CHUNK_BYTES = 1024 * 1024;

const HEADER_LENGTH = 16;
const CSCD_IDENTIFICATION = 0xe4;
const SEGMENT_BLOCK_TO_BLOCK = 0x02;
const SEGMENT_B2B_LENGTH = 28;

/** EXTENDED COPY and RECEIVE COPY RESULTS service actions this copy manager implements. */
export const COPY_COMMANDS: readonly { opcode: number; serviceActions: readonly number[] }[] = [
  { opcode: Op.EXTENDED_COPY, serviceActions: [ServiceAction.EXTENDED_COPY_LID1] },
  {
    opcode: Op.RECEIVE_COPY_RESULTS,
    serviceActions: [ServiceAction.COPY_STATUS, ServiceAction.COPY_OPERATING_PARAMETERS],
  },
];

function copyAborted(asc: AscPair = Asc.NO_ADDITIONAL_SENSE) {
  return checkCondition(SenseKey.COPY_ABORTED, asc);
}

function illegal(asc: AscPair, byte: number) {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, asc, { fieldPointer: { cdb: false, byte } });
}

interface Cscd {
  lu: LogicalUnit | undefined;
  nul: boolean;
  blockLength: number;
}

interface Segment {
  src: number;
  dst: number;
  blocks: number;
  srcLba: number;
  dstLba: number;
}

/** Resolves an identification CSCD descriptor to one of the initiator's LUs by its NAA designator. */
function parseCscd(p: Buffer, off: number, lus: LogicalUnit[]): Cscd {
  // LU ID TYPE is not checked: SPC-4 has the designator alone pick the LU (libiscsi 1.19 expects it ignored).
  const nul = (p[off + 1]! & 0x20) !== 0;
  const pdt = p[off + 1]! & 0x1f;
  if (pdt !== 0) throw invalidParameter(off + 1, 4);
  const codeSet = p[off + 4]! & 0x0f;
  const type = p[off + 5]! & 0x0f;
  const association = (p[off + 5]! >> 4) & 0x03;
  const len = p[off + 7]!;
  if (len > 20) throw invalidParameter(off + 7);
  const designator = p.subarray(off + 8, off + 8 + len);
  let lu: LogicalUnit | undefined;
  if (codeSet === 1 && type === 3 && association === 0 && len === 16) {
    lu = lus.find((l) => l.naa.equals(designator));
  }
  const blockLength = p.readUIntBE(off + 29, 3);
  return { lu, nul, blockLength };
}

/** EXTENDED COPY (LID1): block→block segments between LUs this initiator can reach, by NAA designator. */
export async function extendedCopy(ctx: CommandContext): Promise<Reply> {
  const { cdb, services, nexusKey } = ctx;
  const listLength = cdb.readUInt32BE(10);
  if (listLength === 0) return NO_DATA;
  if (listLength < HEADER_LENGTH || ctx.dataOut.length < listLength) throw parameterListLengthError();
  const p = ctx.dataOut.subarray(0, listLength);
  const listId = p[0]!;
  const listIdUsage = (p[1]! >> 3) & 0x03;
  if ((p[1]! & 0x20) !== 0) throw invalidParameter(1, 5); // STR: no stream devices
  const cscdLength = p.readUInt16BE(2);
  const segLength = p.readUInt32BE(8);
  const inlineLength = p.readUInt32BE(12);
  if (inlineLength !== 0) throw invalidParameter(12);
  if (listIdUsage === 3 && listId !== 0) throw invalidParameter(0);
  if (cscdLength + segLength > MAX_DESCRIPTOR_LIST_LENGTH) throw parameterListLengthError();
  if (HEADER_LENGTH + cscdLength + segLength > listLength) throw parameterListLengthError();

  const lus = services.lusOf(nexusKey);
  const cscds: Cscd[] = [];
  let off = HEADER_LENGTH;
  const cscdEnd = HEADER_LENGTH + cscdLength;
  while (off < cscdEnd) {
    const code = p[off]!;
    const len = code >= 0xe0 && code <= 0xe9 ? 32 : code === 0xea || code === 0xeb ? 64 : 0;
    if (len === 0 || code !== CSCD_IDENTIFICATION) {
      throw illegal(Asc.UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, off);
    }
    if (off + len > cscdEnd) throw parameterListLengthError();
    if (cscds.length === MAX_CSCD_DESCRIPTORS) throw illegal(Asc.TOO_MANY_TARGET_DESCRIPTORS, 2);
    cscds.push(parseCscd(p, off, lus));
    off += len;
  }

  const segments: Segment[] = [];
  const segEnd = cscdEnd + segLength;
  while (off < segEnd) {
    if (off + 4 > segEnd) throw parameterListLengthError();
    const code = p[off]!;
    const len = p.readUInt16BE(off + 2) + 4;
    if (code !== SEGMENT_BLOCK_TO_BLOCK) throw illegal(Asc.UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, off);
    if (len !== SEGMENT_B2B_LENGTH) throw invalidParameter(off + 2);
    if (off + len > segEnd) throw parameterListLengthError();
    if (segments.length === MAX_SEGMENT_DESCRIPTORS) throw illegal(Asc.TOO_MANY_SEGMENT_DESCRIPTORS, 8);
    segments.push({
      src: p.readUInt16BE(off + 4),
      dst: p.readUInt16BE(off + 6),
      blocks: p.readUInt16BE(off + 10),
      srcLba: Number(p.readBigUInt64BE(off + 12)),
      dstLba: Number(p.readBigUInt64BE(off + 20)),
    });
    off += len;
  }

  // Everything is checked before the first block moves, so a refused copy changes nothing.
  const plan = segments.map((s) => {
    const src = cscds[s.src];
    const dst = cscds[s.dst];
    if (!src || !dst || src.nul || dst.nul || !src.lu || !dst.lu) {
      return copyAborted(Asc.COPY_TARGET_DEVICE_NOT_REACHABLE);
    }
    if (src.blockLength !== src.lu.blockSize || dst.blockLength !== dst.lu.blockSize) return copyAborted();
    if (src.lu.blockSize !== dst.lu.blockSize || s.blocks > MAX_SEGMENT_BLOCKS) return copyAborted();
    if (s.srcLba + s.blocks > src.lu.capacity || s.dstLba + s.blocks > dst.lu.capacity) return copyAborted();
    if (dst.lu.writeProtected) return writeProtected(!dst.lu.readOnly);
    if (src.lu.pr.conflicts(nexusKey, 'read') || dst.lu.pr.conflicts(nexusKey, 'write')) {
      return reservationConflict();
    }
    return { ...s, srcLu: src.lu, dstLu: dst.lu };
  });
  const failure = plan.find((x) => x instanceof Error);
  if (failure) throw failure;

  let bytes = 0;
  let done = 0;
  try {
    for (const step of plan) {
      if (step instanceof Error || ctx.aborted()) break;
      bytes += await copySegment(ctx, step.srcLu, step.srcLba, step.dstLu, step.dstLba, step.blocks);
      done++;
    }
  } catch (err) {
    if (listIdUsage <= 1)
      services.recordCopy(nexusKey, listId, { ok: false, segmentsProcessed: done, bytes });
    throw err;
  }
  if (listIdUsage <= 1) services.recordCopy(nexusKey, listId, { ok: true, segmentsProcessed: done, bytes });
  return { transferLength: listLength };
}

/** Copies one segment in chunks; overlapping same-LU moves run back to front so no source is overwritten first. */
async function copySegment(
  ctx: CommandContext,
  src: LogicalUnit,
  srcLba: number,
  dst: LogicalUnit,
  dstLba: number,
  blocks: number,
): Promise<number> {
  const bs = src.blockSize;
  const per = Math.max(1, Math.floor(COPY_CHUNK_BYTES / bs));
  const backwards = src === dst && dstLba > srcLba && dstLba < srcLba + blocks;
  const release = await dst.locks.acquire(dstLba, dstLba + blocks);
  try {
    for (let i = 0; i < blocks && !ctx.aborted(); i += per) {
      const n = Math.min(per, blocks - i);
      const at = backwards ? blocks - i - n : i;
      const data = await src.backing.read((srcLba + at) * bs, n * bs);
      await dst.backing.write((dstLba + at) * bs, data);
    }
    if (!dst.writeCacheEnabled) await dst.flush();
  } finally {
    release();
  }
  return blocks * bs;
}

/** RECEIVE COPY RESULTS: COPY STATUS of a remembered list identifier, or the OPERATING PARAMETERS. */
export function receiveCopyResults(ctx: CommandContext): Reply {
  const { cdb, services, nexusKey } = ctx;
  const sa = cdb[1]! & 0x1f;
  const listId = cdb[2]!;
  const alloc = cdb.readUInt32BE(10);
  if (sa === ServiceAction.COPY_STATUS) {
    const outcome = services.copyOutcome(nexusKey, listId);
    if (!outcome) throw invalidField(2);
    const b = Buffer.alloc(12);
    b.writeUInt32BE(8, 0);
    b[4] = outcome.ok ? 0x01 : 0x02; // completed, without / with errors
    b.writeUInt16BE(Math.min(outcome.segmentsProcessed, 0xffff), 5);
    b[7] = 0xf1; // transfer count in KiB
    b.writeUInt32BE(Math.min(Math.floor(outcome.bytes / 1024), 0xffffffff), 8);
    return dataIn(b, alloc);
  }
  if (sa === ServiceAction.COPY_OPERATING_PARAMETERS) {
    const codes = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    const b = Buffer.alloc(44 + codes.length);
    b.writeUInt32BE(b.length - 4, 0);
    b[4] = 0x01; // SNLID: list identifiers are honoured
    b.writeUInt16BE(MAX_CSCD_DESCRIPTORS, 8);
    b.writeUInt16BE(MAX_SEGMENT_DESCRIPTORS, 10);
    b.writeUInt32BE(MAX_DESCRIPTOR_LIST_LENGTH, 12);
    b.writeUInt32BE(MAX_SEGMENT_BLOCKS * ctx.lu.blockSize, 16); // maximum segment length in bytes
    b.writeUInt16BE(1, 34); // total concurrent copies
    b[36] = 1; // maximum concurrent copies
    b[37] = Math.log2(ctx.lu.blockSize); // data segment granularity: one block
    b[43] = codes.length;
    Buffer.from(codes).copy(b, 44);
    return dataIn(b, alloc);
  }
  throw invalidField(1, 4);
}

function tpcDescriptor(type: number, body: Buffer): Buffer {
  const padded = (body.length + 3) & ~3;
  const d = Buffer.alloc(4 + padded);
  d.writeUInt16BE(type, 0);
  d.writeUInt16BE(padded, 2);
  body.copy(d, 4);
  return d;
}

/** Body (after the 4-byte page header) of the Third-party Copy VPD page (0x8F). */
export function thirdPartyCopyPage(lu: LogicalUnit): Buffer {
  const cmds: number[] = [];
  for (const c of COPY_COMMANDS) cmds.push(c.opcode, c.serviceActions.length, ...c.serviceActions);
  const supportedCommands = tpcDescriptor(0x0001, Buffer.from([cmds.length, ...cmds]));
  const param = Buffer.alloc(0x1c);
  param.writeUInt16BE(MAX_CSCD_DESCRIPTORS, 4);
  param.writeUInt16BE(MAX_SEGMENT_DESCRIPTORS, 6);
  param.writeUInt32BE(MAX_DESCRIPTOR_LIST_LENGTH, 8);
  const parameterData = tpcDescriptor(0x0008, param);
  const supportedDescriptors = tpcDescriptor(
    0x0004,
    Buffer.from([2, SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION]),
  );
  const cscdIds = tpcDescriptor(0x000c, Buffer.alloc(2));
  const general = Buffer.alloc(0x20);
  general.writeUInt32BE(1, 0); // total concurrent copies
  general.writeUInt32BE(1, 4); // maximum identified concurrent copies
  general.writeUInt32BE(MAX_SEGMENT_BLOCKS * lu.blockSize, 8);
  general[12] = Math.log2(lu.blockSize); // data segment granularity: one block
  const generalCopy = tpcDescriptor(0x8001, general);
  return Buffer.concat([supportedCommands, parameterData, supportedDescriptors, cscdIds, generalCopy]);
}
