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

/**
 * One step of {@link fsSteps}: `pwrite` writes all of `data` at `offset` (default 0); `rename` is rename(2);
 * `unlink` with `missingOk` treats a missing file as removed; `absent` fails with EEXIST when `path` exists
 * (lstat), so a sequence can stop before it would put something beside a file it does not own. `close`
 * runs even when an earlier step failed and never fails itself, so a sequence that ends with the closes of
 * its descriptors never leaks one. `spare` creates `path` like {@link createTemp} for the caller's next
 * sequence; it never fails the sequence (its descriptor is -1 when it could not be made), and a failed
 * sequence removes the spares it made. `same` fails with ESTALE when `path` is no longer the file or
 * directory open as `fd` (ENOENT when nothing is there): a directory removed and made again is not ours.
 */
export type FsStep =
  | { op: 'pwrite'; fd: number; data: Buffer; offset?: number }
  | { op: 'ftruncate'; fd: number; length: number }
  | { op: 'fsync' | 'fdatasync' | 'close'; fd: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'unlink'; path: string; missingOk?: boolean }
  | { op: 'absent'; path: string }
  | { op: 'spare'; path: string; dsync?: boolean }
  | { op: 'same'; fd: number; path: string };

/** The error of a failed {@link fsSteps}: `step` is the index of the step that failed (the ones before it ran). */
export interface StepError extends NativeError {
  step: number;
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
  fsSteps(steps: FsStep[]): Promise<number[]>;
  createTemp(path: string, dsync: boolean): Promise<number>;
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

/**
 * Runs `steps` in order in one thread-pool job, stopping at the first failure, which rejects with a
 * {@link StepError}. A durable small update (write, rename, directory fsync) then costs one round trip
 * between threads instead of one per call; on a fast disk those round trips cost as much as the I/O.
 * Resolves with the descriptors of the `spare` steps, in order.
 */
export function fsSteps(steps: FsStep[]): Promise<number[]> {
  return load().fsSteps(steps);
}

/**
 * Creates `path` (which must not exist) for writing, with mode exactly 0600 whatever the umask, O_DSYNC if
 * `dsync`, in one thread-pool job; resolves with the descriptor, which the caller closes (a `close` step of
 * fsSteps, or fs.close).
 */
export function createTemp(path: string, dsync: boolean): Promise<number> {
  return load().createTemp(path, dsync);
}

/** The index of the step a {@link fsSteps} failure stopped at (-1 when `err` did not come from one). */
export function failedStep(err: unknown): number {
  const step = (err as { step?: unknown } | undefined)?.step;
  return typeof step === 'number' ? step : -1;
}
