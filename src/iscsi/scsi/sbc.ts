import type { LogicalUnit } from '../lu/logical-unit.js';
import { type CommandContext, checkRange, dataIn, NO_DATA, type Reply, reserved, u64 } from './command.js';
import { Op } from './constants.js';
import { blockLimits, MAX_COMPARE_AND_WRITE_BLOCKS } from './limits.js';
import { invalidField, miscompare, writeProtected } from './sense.js';

/** Where a read/write CDB keeps its fields. */
interface RwFields {
  lba: number;
  count: number;
  /** RDPROTECT/WRPROTECT/VRPROTECT/ORPROTECT (we have no protection information: must be 0). */
  protect: number;
  fua: boolean;
}

/** Decodes LBA, transfer length and flags of the 6/10/12/16-byte READ/WRITE/VERIFY families. */
function rwFields(cdb: Buffer): RwFields {
  switch (cdb[0]! >> 5) {
    case 0: {
      // 6-byte: 21-bit LBA; for READ(6)/WRITE(6) a length of 0 means 256 blocks.
      const lba = cdb.readUIntBE(1, 3) & 0x1fffff;
      const count = cdb[4] === 0 ? 256 : cdb[4]!;
      return { lba, count, protect: 0, fua: false };
    }
    case 1: // 10-byte
      return {
        lba: cdb.readUInt32BE(2),
        count: cdb.readUInt16BE(7),
        protect: cdb[1]! >> 5,
        fua: (cdb[1]! & 0x08) !== 0,
      };
    case 5: // 12-byte
      return {
        lba: cdb.readUInt32BE(2),
        count: cdb.readUInt32BE(6),
        protect: cdb[1]! >> 5,
        fua: (cdb[1]! & 0x08) !== 0,
      };
    default: // 16-byte
      return {
        lba: u64(cdb, 2),
        count: cdb.readUInt32BE(10),
        protect: cdb[1]! >> 5,
        fua: (cdb[1]! & 0x08) !== 0,
      };
  }
}

function checkTransferLength(lu: LogicalUnit, count: number, byte: number): void {
  if (count > blockLimits(lu).maxTransfer) throw invalidField(byte);
}

function lengthByte(cdb: Buffer): number {
  switch (cdb[0]! >> 5) {
    case 0:
      return 4;
    case 1:
      return 7;
    case 5:
      return 6;
    default:
      return 10;
  }
}

/** DATA PROTECT for a write that would change blocks; a zero-length write changes nothing and is GOOD. */
function checkWritable(lu: LogicalUnit, count = 1): void {
  if (count > 0 && lu.writeProtected) throw writeProtected(!lu.readOnly);
}

async function durable(lu: LogicalUnit, fua: boolean): Promise<void> {
  if (fua || !lu.writeCacheEnabled) await lu.flush();
}

/** READ CAPACITY(10). */
export function readCapacity10(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  reserved(cdb, 1);
  reserved(cdb, 8, 0xfe);
  // SBC-3: with PMI clear the LBA field must be zero.
  if ((cdb[8]! & 1) === 0 && cdb.readUInt32BE(2) !== 0) throw invalidField(2);
  const b = Buffer.alloc(8);
  const last = Math.max(0, lu.capacity - 1);
  b.writeUInt32BE(last > 0xfffffffe ? 0xffffffff : last, 0);
  b.writeUInt32BE(lu.blockSize, 4);
  return dataIn(b, 8);
}

/** READ CAPACITY(16) (SERVICE ACTION IN 0x10). */
export function readCapacity16(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  const alloc = cdb.readUInt32BE(10);
  const b = Buffer.alloc(32);
  b.writeBigUInt64BE(BigInt(Math.max(0, lu.capacity - 1)), 0);
  b.writeUInt32BE(lu.blockSize, 8);
  b[13] = Math.log2(lu.physicalBlockSize / lu.blockSize); // logical blocks per physical block exponent
  if (lu.thin) b[14] = 0x80 | 0x40; // LBPME, LBPRZ
  return dataIn(b, alloc);
}

/** READ(6/10/12/16). */
export async function read(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const f = rwFields(cdb);
  if (f.protect !== 0) throw invalidField(1, 7);
  checkRange(lu, f.lba, f.count);
  checkTransferLength(lu, f.count, lengthByte(cdb));
  const bytes = f.count * lu.blockSize;
  if (bytes === 0) return NO_DATA;
  // Reading past what the initiator will accept is wasted I/O; the residual still reports the full length.
  const wanted = Math.min(bytes, ctx.expectedLength);
  const data = wanted > 0 ? await lu.backing.read(f.lba * lu.blockSize, wanted) : undefined;
  return { data: data ? [data] : [], transferLength: bytes };
}

/**
 * The blocks of Data-Out actually present: iSCSI may deliver less than the CDB asks for (expected transfer
 * length below the CDB length), and then only the whole blocks received are written.
 */
function wholeBlocks(lu: LogicalUnit, dataOut: Buffer, count: number): Buffer {
  const have = Math.min(count, Math.floor(dataOut.length / lu.blockSize));
  return dataOut.subarray(0, have * lu.blockSize);
}

/**
 * {@link wholeBlocks} over Data-Out that arrived as several buffers: views of the leading ones, so the write
 * goes out with writev and nothing is copied.
 */
function wholeBlockParts(lu: LogicalUnit, parts: readonly Buffer[], count: number): Buffer[] {
  let have = 0;
  for (const p of parts) have += p.length;
  let left = Math.min(count, Math.floor(have / lu.blockSize)) * lu.blockSize;
  const out: Buffer[] = [];
  for (const p of parts) {
    if (left <= 0) break;
    const piece = p.length <= left ? p : p.subarray(0, left);
    if (piece.length > 0) out.push(piece);
    left -= piece.length;
  }
  return out;
}

/** WRITE(6/10/12/16). */
export async function write(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const f = rwFields(cdb);
  if (f.protect !== 0) throw invalidField(1, 7);
  checkRange(lu, f.lba, f.count);
  checkTransferLength(lu, f.count, lengthByte(cdb));
  checkWritable(lu, f.count);
  const bytes = f.count * lu.blockSize;
  const data = ctx.dataOutParts
    ? wholeBlockParts(lu, ctx.dataOutParts, f.count)
    : wholeBlocks(lu, ctx.dataOut, f.count);
  if (data.length > 0) {
    const release =
      lu.locks.tryAcquire(f.lba, f.lba + f.count) ?? (await lu.locks.acquire(f.lba, f.lba + f.count));
    try {
      if (!ctx.aborted()) {
        await lu.backing.write(f.lba * lu.blockSize, data);
        await durable(lu, f.fua);
      }
    } finally {
      release();
    }
  }
  return { transferLength: bytes };
}

function bytchkOf(cdb: Buffer): number {
  return (cdb[1]! >> 1) & 0x03;
}

/** VERIFY(10/12/16): BYTCHK 00b checks the range only, 01b compares N blocks, 11b one block against each. */
export async function verify(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const f = rwFields(cdb);
  if (f.protect !== 0) throw invalidField(1, 7);
  const bytchk = bytchkOf(cdb);
  if (bytchk === 2) throw invalidField(1, 2);
  checkRange(lu, f.lba, f.count);
  checkTransferLength(lu, f.count, lengthByte(cdb));
  const bs = lu.blockSize;
  if (bytchk === 0 || f.count === 0) return { transferLength: 0 };
  const transferLength = bytchk === 1 ? f.count * bs : bs;
  // A verify must see all its data: GOOD after comparing only part of it would vouch for unchecked blocks.
  if (ctx.dataOut.length < transferLength) throw invalidField(lengthByte(cdb));
  const given = ctx.dataOut.subarray(0, transferLength);
  const blocks = f.count;
  const medium = await lu.backing.read(f.lba * bs, blocks * bs);
  for (let i = 0; i < blocks; i++) {
    const want = bytchk === 1 ? given.subarray(i * bs, (i + 1) * bs) : given;
    const have = medium.subarray(i * bs, (i + 1) * bs);
    if (!want.equals(have)) {
      const at = firstDifference(want, have);
      throw miscompare((bytchk === 1 ? i * bs : 0) + at);
    }
  }
  return { transferLength };
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** WRITE AND VERIFY(10/12/16): the write reaches the medium before GOOD; reading it back cannot differ. */
export async function writeAndVerify(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const f = rwFields(cdb);
  if (f.protect !== 0) throw invalidField(1, 7);
  const bytchk = bytchkOf(cdb);
  if (bytchk >= 2) throw invalidField(1, 2);
  checkRange(lu, f.lba, f.count);
  checkTransferLength(lu, f.count, lengthByte(cdb));
  checkWritable(lu, f.count);
  const data = wholeBlocks(lu, ctx.dataOut, f.count);
  if (data.length > 0) {
    const release = await lu.locks.acquire(f.lba, f.lba + f.count);
    try {
      if (!ctx.aborted()) {
        await lu.backing.write(f.lba * lu.blockSize, data);
        await lu.flush();
      }
    } finally {
      release();
    }
  }
  return { transferLength: f.count * lu.blockSize };
}

/** SYNCHRONIZE CACHE(10/16): fdatasync; the range is checked but the whole file is flushed. */
export async function synchronizeCache(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const sixteen = cdb[0] === Op.SYNCHRONIZE_CACHE_16;
  const lba = sixteen ? u64(cdb, 2) : cdb.readUInt32BE(2);
  const count = sixteen ? cdb.readUInt32BE(10) : cdb.readUInt16BE(7);
  checkRange(lu, lba, count);
  await lu.flush();
  return NO_DATA;
}

/** PRE-FETCH(10/16): range-checked and answered GOOD (the page cache does the rest on the next read). */
export function preFetch(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  const sixteen = cdb[0] === Op.PRE_FETCH_16;
  reserved(cdb, 1, 0xfd);
  const lba = sixteen ? u64(cdb, 2) : cdb.readUInt32BE(2);
  const count = sixteen ? cdb.readUInt32BE(10) : cdb.readUInt16BE(7);
  checkRange(lu, lba, count);
  return NO_DATA;
}

/** COMPARE AND WRITE: compare N blocks, and only if equal write the next N, atomically for the range. */
export async function compareAndWrite(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  if (cdb[1]! >> 5 !== 0) throw invalidField(1, 7);
  const lba = u64(cdb, 2);
  const count = cdb[13]!;
  const bs = lu.blockSize;
  if (count > MAX_COMPARE_AND_WRITE_BLOCKS) throw invalidField(13);
  checkRange(lu, lba, count);
  checkWritable(lu, count);
  const need = 2 * count * bs;
  // The Data-Out must be exactly the verify and write halves: a compare against a guess is never GOOD.
  if (ctx.dataOut.length !== need) throw invalidField(13);
  if (count === 0) return NO_DATA;
  const verifyData = ctx.dataOut.subarray(0, count * bs);
  const writeData = ctx.dataOut.subarray(count * bs, need);
  const release = await lu.locks.acquire(lba, lba + count);
  try {
    if (ctx.aborted()) return { transferLength: need };
    const medium = await lu.backing.read(lba * bs, count * bs);
    if (!medium.equals(verifyData)) throw miscompare(firstDifference(verifyData, medium));
    await lu.backing.write(lba * bs, writeData);
    await durable(lu, (cdb[1]! & 0x08) !== 0);
  } finally {
    release();
  }
  return { transferLength: need };
}

/** ORWRITE(16): medium |= data, under the range lock. */
export async function orWrite(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const f = rwFields(cdb);
  if (f.protect !== 0) throw invalidField(1, 7);
  checkRange(lu, f.lba, f.count);
  checkTransferLength(lu, f.count, 10);
  checkWritable(lu, f.count);
  const bs = lu.blockSize;
  const data = wholeBlocks(lu, ctx.dataOut, f.count);
  if (data.length > 0) {
    const release = await lu.locks.acquire(f.lba, f.lba + f.count);
    try {
      if (!ctx.aborted()) {
        const medium = await lu.backing.read(f.lba * bs, data.length);
        for (let i = 0; i < data.length; i++) medium[i]! |= data[i]!;
        await lu.backing.write(f.lba * bs, medium);
        await durable(lu, f.fua);
      }
    } finally {
      release();
    }
  }
  return { transferLength: f.count * bs };
}

/** READ DEFECT DATA(10/12): a file has no grown or primary defects; an empty list in the asked format. */
export function readDefectData(ctx: CommandContext): Reply {
  const { cdb } = ctx;
  const twelve = cdb[0] === Op.READ_DEFECT_DATA_12;
  const format = (twelve ? cdb[1]! : cdb[2]!) & 0x1f;
  const alloc = twelve ? cdb.readUInt32BE(6) : cdb.readUInt16BE(7);
  const b = Buffer.alloc(twelve ? 8 : 4);
  b[1] = format; // PLISTV/GLISTV/format echoed; the lists are empty
  return dataIn(b, alloc);
}

/** START STOP UNIT: a file-backed LU is always started; valid power conditions are accepted. */
export function startStopUnit(ctx: CommandContext): Reply {
  const { cdb } = ctx;
  reserved(cdb, 1, 0xfe);
  reserved(cdb, 2);
  reserved(cdb, 3, 0xf0);
  reserved(cdb, 4, 0x08);
  const condition = cdb[4]! >> 4;
  if (![0x0, 0x1, 0x2, 0x3, 0x7, 0xa, 0xb].includes(condition)) throw invalidField(4, 7);
  return NO_DATA;
}

/** PREVENT ALLOW MEDIUM REMOVAL: nothing to prevent on a non-removable LU, but the field is validated. */
export function preventAllow(ctx: CommandContext): Reply {
  const { cdb } = ctx;
  reserved(cdb, 4, 0xfc);
  return NO_DATA;
}
