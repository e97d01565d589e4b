import type { LogicalUnit } from '../lu/logical-unit.js';

/** Largest single READ/WRITE in blocks (libiscsi writes 65536 blocks in one command)... */
export const MAX_TRANSFER_BLOCKS = 65536;
/** ...but never more than this many bytes in memory for one command. */
export const MAX_TRANSFER_BYTES = 64 * 1024 * 1024;
/** Preferred transfer size, in bytes (OPTIMAL TRANSFER LENGTH). */
export const OPTIMAL_TRANSFER_BYTES = 1024 * 1024;
/** File-system block: I/O aligned to it avoids read-modify-write in the page cache. */
export const FS_BLOCK_BYTES = 4096;
/** Largest COMPARE AND WRITE, in blocks (the CDB field is one byte). */
export const MAX_COMPARE_AND_WRITE_BLOCKS = 255;
/** Largest UNMAP or WRITE SAME range, in blocks (libiscsi calls more than 2^20 "insanely big"). */
export const MAX_UNMAP_BLOCKS = 1024 * 1024;
/** Most block descriptors in one UNMAP parameter list. */
export const MAX_UNMAP_DESCRIPTORS = 256;

/** Limits of one LU in its own blocks. */
export interface BlockLimits {
  maxTransfer: number;
  optimalTransfer: number;
  granularity: number;
  maxUnmap: number;
  maxWriteSame: number;
}

/** The limits above expressed in `lu`'s logical blocks. */
export function blockLimits(lu: LogicalUnit): BlockLimits {
  const bs = lu.blockSize;
  return {
    maxTransfer: Math.min(MAX_TRANSFER_BLOCKS, MAX_TRANSFER_BYTES / bs),
    optimalTransfer: OPTIMAL_TRANSFER_BYTES / bs,
    granularity: Math.max(1, Math.max(FS_BLOCK_BYTES, lu.physicalBlockSize) / bs),
    maxUnmap: MAX_UNMAP_BLOCKS,
    maxWriteSame: MAX_UNMAP_BLOCKS,
  };
}
