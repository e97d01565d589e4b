import type { LogicalUnit } from '../lu/logical-unit.js';
import { type CommandContext, checkRange, dataIn, NO_DATA, type Reply, u64 } from './command.js';
import { Op } from './constants.js';
import { blockLimits, MAX_UNMAP_DESCRIPTORS } from './limits.js';
import {
  invalidField,
  invalidParameter,
  lbaOutOfRange,
  parameterListLengthError,
  writeProtected,
} from './sense.js';

/** Pattern writes go out in pieces of about this many bytes, so memory stays bounded for any range. */
const PATTERN_CHUNK_BYTES = 1024 * 1024;

async function deallocate(lu: LogicalUnit, lba: number, count: number): Promise<void> {
  const punch = lu.backing.punchHole;
  if (!punch || count === 0) return;
  await punch.call(lu.backing, lba * lu.blockSize, count * lu.blockSize);
}

/** WRITE SAME(10/16): fills the range with one block, or deallocates it (UNMAP bit, zero data or NDOB). */
export async function writeSame(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const sixteen = cdb[0] === Op.WRITE_SAME_16;
  const flags = cdb[1]!;
  if (flags >> 5 !== 0) throw invalidField(1, 7); // WRPROTECT
  if ((flags & 0x10) !== 0) throw invalidField(1, 4); // ANCHOR: ANC_SUP is 0
  if ((flags & 0x06) !== 0) throw invalidField(1, (flags & 0x04) !== 0 ? 2 : 1); // PBDATA/LBDATA (obsolete)
  const unmap = (flags & 0x08) !== 0;
  const ndob = sixteen && (flags & 0x01) !== 0;
  if (!sixteen && (flags & 0x01) !== 0) throw invalidField(1, 0);
  const lba = sixteen ? u64(cdb, 2) : cdb.readUInt32BE(2);
  let count = sixteen ? cdb.readUInt32BE(10) : cdb.readUInt16BE(7);
  const lim = blockLimits(lu);
  if (count > lim.maxWriteSame) throw invalidField(sixteen ? 10 : 7);
  checkRange(lu, lba, count);
  // WSNZ=0: zero blocks means "to the end of the LU" (chunked and abortable, so a big LU is no hazard).
  if (count === 0) count = lu.capacity - lba;
  if (lu.writeProtected) throw writeProtected(!lu.readOnly);
  if (unmap && !lu.thin) throw invalidField(1, 3);
  const bs = lu.blockSize;
  const transferLength = ndob ? 0 : bs;
  // Exactly one block of Data-Out (none with NDOB): anything else is a malformed command, not a residual.
  if (ctx.dataOut.length !== transferLength) throw invalidField(sixteen ? 10 : 7);
  const pattern = ndob ? undefined : ctx.dataOut;
  if (count === 0) return { transferLength };
  const release = await lu.locks.acquire(lba, lba + count);
  try {
    if (ctx.aborted()) return { transferLength };
    if (unmap) {
      // As LIO does (and libiscsi expects), UNMAP deallocates whatever the pattern; LBPRZ says it reads as zeros.
      await deallocate(lu, lba, count);
    } else {
      await writePattern(ctx, lu, lba, count, pattern ?? Buffer.alloc(bs));
    }
    if (!lu.writeCacheEnabled) await lu.flush();
  } finally {
    release();
  }
  return { transferLength };
}

async function writePattern(ctx: CommandContext, lu: LogicalUnit, lba: number, count: number, block: Buffer) {
  const bs = lu.blockSize;
  const perChunk = Math.max(1, Math.min(count, Math.floor(PATTERN_CHUNK_BYTES / bs)));
  const chunk = Buffer.allocUnsafe(perChunk * bs);
  for (let i = 0; i < perChunk; i++) block.copy(chunk, i * bs);
  for (let done = 0; done < count && !ctx.aborted(); ) {
    const n = Math.min(perChunk, count - done);
    await lu.backing.write((lba + done) * bs, chunk.subarray(0, n * bs));
    done += n;
  }
}

/** UNMAP: validates the whole parameter list before deallocating anything. */
export async function unmap(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  if ((cdb[1]! & 0x01) !== 0) throw invalidField(1, 0); // ANCHOR
  const listLength = cdb.readUInt16BE(7);
  if (listLength === 0) return NO_DATA;
  if (lu.writeProtected) throw writeProtected(!lu.readOnly);
  if (listLength < 8 || ctx.dataOut.length < listLength) throw parameterListLengthError();
  const p = ctx.dataOut.subarray(0, listLength);
  const dataLength = p.readUInt16BE(0);
  const descLength = p.readUInt16BE(2);
  // The stated lengths must agree with the list we got; a short list is a length error, never a guess.
  if (dataLength < 6 || dataLength + 2 > listLength) throw parameterListLengthError();
  if (descLength + 8 > listLength) throw parameterListLengthError();
  const n = Math.floor(descLength / 16);
  if (n > MAX_UNMAP_DESCRIPTORS) throw invalidParameter(2);
  const lim = blockLimits(lu);
  const ranges: { lba: number; count: number }[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const off = 8 + 16 * i;
    const lba = Number(p.readBigUInt64BE(off));
    const count = p.readUInt32BE(off + 8);
    if (lba + count > lu.capacity || lba > lu.capacity) throw lbaOutOfRange();
    if (count > lim.maxUnmap) throw invalidParameter(off + 8);
    total += count;
    if (count > 0) ranges.push({ lba, count });
  }
  if (total > lim.maxUnmap) throw invalidParameter(8);
  for (const r of ranges) {
    if (ctx.aborted()) break;
    const release = await lu.locks.acquire(r.lba, r.lba + r.count);
    try {
      await deallocate(lu, r.lba, r.count);
    } finally {
      release();
    }
  }
  return { transferLength: listLength };
}

/** Provisioning status values of an LBA status descriptor. */
const MAPPED = 0;
const DEALLOCATED = 1;

/** GET LBA STATUS (SERVICE ACTION IN 0x12): mapped/deallocated extents from the requested LBA on. */
export async function getLbaStatus(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu } = ctx;
  const lba = u64(cdb, 2);
  const alloc = cdb.readUInt32BE(10);
  if (lba >= lu.capacity) throw lbaOutOfRange();
  const bs = lu.blockSize;
  const end = lu.capacity * bs;
  // Room for as many descriptors as the allocation length holds (at least one, so the header is honest).
  const max = Math.max(1, Math.min(64, Math.floor((alloc - 8) / 16)));
  const extents: { lba: number; count: number; status: number }[] = [];
  const { seekData, seekHole } = lu.backing;
  let pos = lba * bs;
  if (!seekData || !seekHole) {
    extents.push({ lba, count: lu.capacity - lba, status: MAPPED });
  } else {
    while (pos < end && extents.length < max) {
      const data = await seekData.call(lu.backing, pos);
      if (data === pos) {
        let hole = await seekHole.call(lu.backing, pos);
        if (hole < 0 || hole > end) hole = end;
        // Holes are file-system-block aligned, hence block aligned; round outward anyway to stay whole.
        const next = Math.max(pos + bs, Math.ceil(hole / bs) * bs);
        extents.push({ lba: pos / bs, count: (Math.min(next, end) - pos) / bs, status: MAPPED });
        pos = Math.min(next, end);
      } else {
        const stop = data < 0 || data > end ? end : Math.floor(data / bs) * bs;
        const next = Math.max(pos + bs, stop);
        extents.push({ lba: pos / bs, count: (Math.min(next, end) - pos) / bs, status: DEALLOCATED });
        pos = Math.min(next, end);
      }
    }
  }
  const out = Buffer.alloc(8 + 16 * extents.length);
  out.writeUInt32BE(4 + 16 * extents.length, 0);
  extents.forEach((e, i) => {
    const off = 8 + 16 * i;
    out.writeBigUInt64BE(BigInt(e.lba), off);
    out.writeUInt32BE(Math.min(e.count, 0xffffffff), off + 8);
    out[off + 12] = e.status;
  });
  return dataIn(out, alloc);
}
