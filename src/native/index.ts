import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * An error from the native addon, shaped like Node's fs errors: `code` is the errno name ('EOPNOTSUPP'),
 * `errno` the negated errno number, `syscall` the failing call.
 */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

interface Addon {
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  fallocate(fd: number, offset: number, length: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  seekData(fd: number, offset: number): Promise<number>;
  seekHole(fd: number, offset: number): Promise<number>;
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): Promise<number>;
  dataExtents(fd: number, offset: number, maxExtents: number): Promise<Float64Array>;
  copyRanges(fdIn: number, fdOut: number, ranges: Float64Array): Promise<number>;
  flock(fd: number, exclusive: boolean, nonblock: boolean): void;
  preadNowait(fd: number, buffer: Buffer, offset: number): number;
}

// src/native/ and dist/native/ are both two levels below the package root, so one relative URL serves tsx
// and the compiled build alike.
const ADDON_PATH = fileURLToPath(new URL('../../build/Release/targetd_native.node', import.meta.url));

let addon: Addon | undefined;

// Loaded on first use so that importing a module that merely mentions the addon (e.g. for types) works even
// before `npm install` has built it, and the failure names the fix.
function load(): Addon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    } catch (err) {
      throw new Error(
        `cannot load the native addon ${ADDON_PATH} (build it with 'npm run install'): ${(err as Error).message}`,
      );
    }
  }
  return addon;
}

/** True when `err` came from the addon (or Node's fs) with errno name `code`. */
export function isErrno(err: unknown, ...codes: string[]): err is NativeError {
  return err instanceof Error && codes.includes((err as { code?: unknown }).code as string);
}

/** Deallocates [offset, offset+length) without changing the file size (FALLOC_FL_PUNCH_HOLE|KEEP_SIZE). */
export function punchHole(fd: number, offset: number, length: number): Promise<void> {
  return load().punchHole(fd, offset, length);
}

/** Allocates real blocks for [offset, offset+length), growing the file if needed (fallocate mode 0). */
export function fallocate(fd: number, offset: number, length: number): Promise<void> {
  return load().fallocate(fd, offset, length);
}

/** Sets the file size to `length` (0 … 2^53; Node's own ftruncate stops short of 2^53). */
export function ftruncate(fd: number, length: number): Promise<void> {
  return load().ftruncate(fd, length);
}

/** Offset of the first data at or after `offset` (lseek SEEK_DATA), or -1 when there is no more data. */
export function seekData(fd: number, offset: number): Promise<number> {
  return load().seekData(fd, offset);
}

/** Offset of the first hole at or after `offset` (lseek SEEK_HOLE; EOF counts as a hole), -1 past EOF. */
export function seekHole(fd: number, offset: number): Promise<number> {
  return load().seekHole(fd, offset);
}

/**
 * Copies `len` bytes in the kernel (copy_file_range) from fdIn@offIn to fdOut@offOut; file positions are not
 * used or moved. Resolves with the bytes copied, fewer than `len` only when the input ended.
 */
export function copyFileRange(
  fdIn: number,
  offIn: number,
  fdOut: number,
  offOut: number,
  len: number,
): Promise<number> {
  return load().copyFileRange(fdIn, offIn, fdOut, offOut, len);
}

/**
 * Up to `maxExtents` (1 … 2^20) data extents at or after `offset`, as flat [start, end) pairs; empty when no
 * data follows. One threadpool round trip for the whole batch, where seekData/seekHole cost one per call.
 */
export function dataExtents(fd: number, offset: number, maxExtents: number): Promise<Float64Array> {
  return load().dataExtents(fd, offset, maxExtents);
}

/**
 * Copies each [start, end) range of `ranges` (flat pairs) from fdIn to the same offsets of fdOut with
 * copy_file_range, in one round trip. Resolves with the bytes copied (fewer only if the input shrank).
 */
export function copyRanges(fdIn: number, fdOut: number, ranges: Float64Array): Promise<number> {
  return load().copyRanges(fdIn, fdOut, ranges);
}

/**
 * Takes a flock(2) lock on `fd` (exclusive or shared); with `nonblock`, throws a NativeError with code
 * 'EWOULDBLOCK'/'EAGAIN' when another open file holds a conflicting lock. Released when the fd is closed.
 */
export function flock(fd: number, exclusive: boolean, nonblock: boolean): void {
  load().flock(fd, exclusive, nonblock);
}

/**
 * Reads `buffer.length` bytes at `offset` only if they can be had without waiting for the disk
 * (preadv2 RWF_NOWAIT), synchronously: the bytes read, -1 when not cached (or on any error: retry with an
 * ordinary read, which reports it), -2 when this file cannot be read that way at all.
 */
export function preadNowait(fd: number, buffer: Buffer, offset: number): number {
  return load().preadNowait(fd, buffer, offset);
}
