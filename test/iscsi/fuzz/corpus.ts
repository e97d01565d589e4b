/**
 * Seeds and mutators for the iSCSI fuzzers: valid PDUs built with the codec (login requests with real key
 * sets, SCSI commands with real CDBs, Data-Out, NOP-Out, Text, TMF, Logout, SNACK), then mutated at the byte
 * level (bit flips, interesting values, truncation, extension, huge lengths, random opcodes) or at the field
 * level (wrong TTT/DataSN/offsets, reused ITTs, CmdSN outside the window, LBAs past the end, huge lengths).
 *
 * Shared by the in-process fuzzers (test/iscsi/fuzz/*.test.ts) and the daemon fuzzer (test/e2e/iscsi-fuzz.test.ts).
 */
import { chapResponse, encodeText, type KeyValue } from '../../../src/iscsi/login/index.js';
import {
  type DecodedPdu,
  type DigestOptions,
  encodeDataOut,
  encodeLogoutRequest,
  encodeNopOut,
  encodeScsiCommand,
  encodeSnackRequest,
  encodeTaskMgmtRequest,
  encodeTextRequest,
  lunField,
} from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import type { Rng } from './prng.js';

const INTERESTING8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x3f, 0x40, 0xc0] as const;
const INTERESTING32 = [
  0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x200, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe,
  0xffffffff,
] as const;
/** BHS offsets worth hitting: opcode, flags, AHS/data lengths, LUN, ITT, TTT/EDTL, CmdSN, ExpStatSN, CDB/fields. */
const HOT_OFFSETS = [
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 19, 20, 23, 24, 27, 28, 31, 32, 33, 36, 40, 44, 47,
];

export const MUTATIONS = [
  'bitflip',
  'byte',
  'interesting8',
  'interesting32',
  'truncate',
  'extend',
  'huge-dsl',
  'huge-ahs',
  'random-opcode',
  'dsl-mismatch',
  'zero-tail',
  'random-bhs',
  'splice',
] as const;
export type Mutation = (typeof MUTATIONS)[number];

/**
 * Applies one byte-level mutation to an encoded PDU (header, AHS, data, padding all in one buffer).
 * Returns a new buffer; `kind` forces one mutation, otherwise one is chosen.
 */
export function mutateBytes(
  rng: Rng,
  pdu: Buffer,
  kind: Mutation = rng.pick(MUTATIONS),
  other?: Buffer,
): Buffer {
  let b = Buffer.from(pdu);
  const at = () =>
    b.length === 0 ? 0 : rng.chance(0.7) && b.length >= 48 ? rng.pick(HOT_OFFSETS) : rng.int(b.length);
  switch (kind) {
    case 'bitflip': {
      const n = rng.range(1, 8);
      for (let i = 0; i < n && b.length > 0; i++) {
        const o = at();
        b[o] = b[o]! ^ (1 << rng.int(8));
      }
      return b;
    }
    case 'byte': {
      const n = rng.range(1, 4);
      for (let i = 0; i < n && b.length > 0; i++) b[at()] = rng.int(256);
      return b;
    }
    case 'interesting8':
      if (b.length > 0) b[at()] = rng.pick(INTERESTING8);
      return b;
    case 'interesting32': {
      if (b.length < 4) return b;
      const o = Math.min(at() & ~3, b.length - 4);
      b.writeUInt32BE(rng.pick(INTERESTING32), o);
      return b;
    }
    case 'truncate':
      return b.subarray(0, rng.int(b.length));
    case 'extend':
      return Buffer.concat([
        b,
        rng.chance(0.5) ? Buffer.alloc(rng.range(1, 64)) : rng.bytes(rng.range(1, 600)),
      ]);
    case 'huge-dsl':
      if (b.length >= 8) {
        const v = rng.pick([0xffffff, 0x800000, 0x40001, 0x10000, 8193, 262145, rng.int(0x1000000)]);
        b[5] = v >>> 16;
        b[6] = (v >>> 8) & 0xff;
        b[7] = v & 0xff;
      }
      return b;
    case 'huge-ahs':
      if (b.length >= 5) b[4] = rng.pick([255, 64, 65, 1, 2, 5, rng.int(256)]);
      return b;
    case 'random-opcode':
      if (b.length > 0) b[0] = (b[0]! & 0xc0) | rng.int(64);
      return b;
    case 'dsl-mismatch': {
      // DataSegmentLength a little off from the bytes that follow: desynchronises framing.
      if (b.length < 8) return b;
      const dsl = (b[5]! << 16) | (b[6]! << 8) | b[7]!;
      const v = Math.max(0, Math.min(0xffffff, dsl + rng.pick([-4, -3, -1, 1, 2, 3, 4, 48, -48])));
      b[5] = v >>> 16;
      b[6] = (v >>> 8) & 0xff;
      b[7] = v & 0xff;
      return b;
    }
    case 'zero-tail':
      if (b.length > 0) b.fill(0, rng.int(b.length));
      return b;
    case 'random-bhs':
      b = Buffer.concat([rng.bytes(48), b.subarray(48)]);
      // Keep the lengths sane half of the time so the random header gets parsed rather than just refused.
      if (rng.chance(0.5)) {
        b[4] = 0;
        b[5] = 0;
        b[6] = 0;
        b[7] = 0;
      }
      return b;
    case 'splice': {
      const o = other ?? rng.bytes(rng.range(1, 96));
      const cut = rng.int(b.length + 1);
      const from = rng.int(o.length + 1);
      return Buffer.concat([b.subarray(0, cut), o.subarray(from)]);
    }
  }
}

/** Splits a byte stream at random points, as TCP might deliver it. */
export function randomChunks(rng: Rng, stream: Buffer, maxChunk = 4096): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < stream.length) {
    const n = rng.chance(0.2) ? rng.range(1, 8) : rng.range(1, maxChunk);
    out.push(stream.subarray(off, off + n));
    off += n;
  }
  return out;
}

// ---- CDBs ----

export interface CdbChoice {
  cdb: Buffer;
  /** Data-In the command would return at most (EDTL for reads). */
  readLength: number;
  /** Data-Out it carries. */
  writeLength: number;
  name: string;
}

/** An LBA near something interesting for a LU of `blocks` blocks: start, end, past the end, random, huge. */
function lba(rng: Rng, blocks: number): number {
  return rng.weighted<number>([
    [4, rng.int(Math.max(1, blocks))],
    [2, Math.max(0, blocks - rng.range(1, 8))],
    [1, blocks],
    [1, blocks + rng.int(16)],
    [1, 0],
    [1, 0xffffffff],
    [1, rng.u32()],
  ]);
}

function count(rng: Rng, max: number): number {
  return rng.weighted<number>([
    [6, rng.range(1, 16)],
    [2, rng.range(1, max)],
    [1, 0],
    [1, 0xffff],
    [1, rng.u32()],
  ]);
}

/**
 * A real CDB of a command the target implements (plus some it does not), with plausible or edge-case
 * fields. `blocks` is the LU's capacity in 512-byte blocks; transfer lengths are capped so valid commands
 * stay small, but the CDB may still claim much more than the iSCSI EDTL carries.
 */
export function randomCdb(rng: Rng, blocks: number, naas: readonly Buffer[] = []): CdbChoice {
  const bs = 512;
  const small = (n: number) => Math.min(n, 64) * bs;
  const kind = rng.int(34);
  const c = (len: number) => Buffer.alloc(len);
  switch (kind) {
    case 0:
      return { cdb: c(6), readLength: 0, writeLength: 0, name: 'TUR' };
    case 1: {
      const b = c(6);
      b[0] = 0x12;
      const alloc = rng.pick([36, 96, 255, 0, 1, 0xffff]);
      b.writeUInt16BE(alloc, 3);
      if (rng.chance(0.6)) {
        b[1] = 1;
        b[2] = rng.pick([0x00, 0x80, 0x83, 0x86, 0x8f, 0xb0, 0xb1, 0xb2, 0xb3, 0xc0, rng.int(256)]);
      }
      return { cdb: b, readLength: alloc, writeLength: 0, name: 'INQUIRY' };
    }
    case 2: {
      const b = c(10);
      b[0] = 0x25;
      return { cdb: b, readLength: 8, writeLength: 0, name: 'READ CAPACITY(10)' };
    }
    case 3: {
      const b = c(16);
      b[0] = 0x9e;
      b[1] = rng.chance(0.8) ? 0x10 : rng.pick([0x12, rng.int(32)]);
      const alloc = rng.pick([32, 16, 24, 0, 0xffff]);
      b.writeUInt32BE(alloc, 10);
      if (b[1] === 0x12) b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      return { cdb: b, readLength: alloc, writeLength: 0, name: 'SAI(16)' };
    }
    case 4:
    case 5: {
      const b = c(10);
      b[0] = 0x28;
      const n = count(rng, 64) & 0xffff;
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      b.writeUInt16BE(n, 7);
      if (rng.chance(0.1)) b[1] = rng.int(256);
      return { cdb: b, readLength: small(n), writeLength: 0, name: 'READ(10)' };
    }
    case 6:
    case 7: {
      const b = c(10);
      b[0] = 0x2a;
      const n = count(rng, 64) & 0xffff;
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      b.writeUInt16BE(n, 7);
      if (rng.chance(0.1)) b[1] = rng.int(256);
      return { cdb: b, readLength: 0, writeLength: small(n), name: 'WRITE(10)' };
    }
    case 8: {
      const b = c(16);
      b[0] = 0x88;
      const n = count(rng, 64);
      b.writeBigUInt64BE(BigInt(rng.chance(0.1) ? rng.u32() * 0x100000000 + rng.u32() : lba(rng, blocks)), 2);
      b.writeUInt32BE(n >>> 0, 10);
      return { cdb: b, readLength: small(n), writeLength: 0, name: 'READ(16)' };
    }
    case 9: {
      const b = c(16);
      b[0] = 0x8a;
      const n = count(rng, 64);
      b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      b.writeUInt32BE(n >>> 0, 10);
      return { cdb: b, readLength: 0, writeLength: small(n), name: 'WRITE(16)' };
    }
    case 10: {
      const b = c(6);
      b[0] = 0x08;
      const l = lba(rng, blocks) & 0x1fffff;
      b[1] = l >>> 16;
      b.writeUInt16BE(l & 0xffff, 2);
      b[4] = rng.int(256);
      return { cdb: b, readLength: small(b[4] || 256), writeLength: 0, name: 'READ(6)' };
    }
    case 11: {
      const b = c(6);
      b[0] = 0x0a;
      const l = lba(rng, blocks) & 0x1fffff;
      b[1] = l >>> 16;
      b.writeUInt16BE(l & 0xffff, 2);
      b[4] = rng.range(0, 8);
      return { cdb: b, readLength: 0, writeLength: small(b[4] || 256), name: 'WRITE(6)' };
    }
    case 12: {
      const b = c(6);
      b[0] = 0x1a;
      b[2] = rng.pick([0x3f, 0x08, 0x0a, 0x1c, 0x00, rng.int(256)]);
      b[4] = rng.pick([255, 4, 0, 12]);
      return { cdb: b, readLength: b[4]!, writeLength: 0, name: 'MODE SENSE(6)' };
    }
    case 13: {
      const b = c(10);
      b[0] = 0x5a;
      b[2] = rng.pick([0x3f, 0x08, 0x0a, rng.int(256)]);
      b.writeUInt16BE(rng.pick([255, 8, 0, 0xffff]), 7);
      return { cdb: b, readLength: b.readUInt16BE(7), writeLength: 0, name: 'MODE SENSE(10)' };
    }
    case 14: {
      const b = c(12);
      b[0] = 0xa0;
      b[2] = rng.pick([0, 1, 2, 0x10, 0x11, 0x12, rng.int(256)]);
      const alloc = rng.pick([256, 16, 15, 0, 0x10000]);
      b.writeUInt32BE(alloc, 6);
      return { cdb: b, readLength: alloc, writeLength: 0, name: 'REPORT LUNS' };
    }
    case 15: {
      const b = c(10);
      b[0] = 0x35;
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      b.writeUInt16BE(count(rng, 64) & 0xffff, 7);
      return { cdb: b, readLength: 0, writeLength: 0, name: 'SYNCHRONIZE CACHE(10)' };
    }
    case 16: {
      // UNMAP with a parameter list of block descriptors (some past the end).
      const n = rng.range(0, 4);
      const p = Buffer.alloc(8 + 16 * n);
      p.writeUInt16BE(6 + 16 * n, 0);
      p.writeUInt16BE(16 * n, 2);
      for (let i = 0; i < n; i++) {
        p.writeBigUInt64BE(BigInt(lba(rng, blocks)), 8 + 16 * i);
        p.writeUInt32BE(count(rng, 64) >>> 0, 16 + 16 * i);
      }
      if (rng.chance(0.2)) p.writeUInt16BE(rng.int(0x10000), rng.pick([0, 2]));
      const b = c(10);
      b[0] = 0x42;
      b.writeUInt16BE(p.length, 7);
      return { cdb: b, readLength: 0, writeLength: p.length, name: 'UNMAP' };
    }
    case 17: {
      const b = c(16);
      b[0] = 0x93;
      b[1] = rng.pick([0, 0x08, 0x01, 0x10]);
      b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      b.writeUInt32BE(rng.chance(0.7) ? rng.range(0, 32) : rng.u32(), 10);
      return { cdb: b, readLength: 0, writeLength: bs, name: 'WRITE SAME(16)' };
    }
    case 18: {
      const b = c(10);
      b[0] = 0x41;
      b[1] = rng.pick([0, 0x08]);
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      b.writeUInt16BE(rng.range(0, 32), 7);
      return { cdb: b, readLength: 0, writeLength: bs, name: 'WRITE SAME(10)' };
    }
    case 19: {
      const b = c(16);
      b[0] = 0x89;
      b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      b[13] = rng.pick([1, 2, 0, 255]);
      return { cdb: b, readLength: 0, writeLength: 2 * bs * b[13]!, name: 'COMPARE AND WRITE' };
    }
    case 20: {
      const b = c(10);
      b[0] = 0x5e;
      b[1] = rng.pick([0, 1, 2, 3, rng.int(32)]);
      b.writeUInt16BE(rng.pick([8, 255, 0, 0xffff]), 7);
      return { cdb: b, readLength: b.readUInt16BE(7), writeLength: 0, name: 'PR IN' };
    }
    case 21: {
      const p = rng.bytes(24);
      if (rng.chance(0.7)) {
        p.fill(0, 16);
        p[20] = rng.pick([0, 1]); // APTPL
      }
      const b = c(10);
      b[0] = 0x5f;
      b[1] = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, rng.int(32)]);
      b[2] = rng.pick([0, 1, 3, 5, 6, 7, 8]);
      b.writeUInt32BE(24, 5);
      return { cdb: b, readLength: 0, writeLength: 24, name: 'PR OUT' };
    }
    case 22: {
      const b = c(10);
      b[0] = rng.pick([0x2f, 0x2e]);
      b[1] = rng.pick([0, 0x02, 0x06]);
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      const n = rng.range(0, 8);
      b.writeUInt16BE(n, 7);
      const bytchk = (b[1]! & 0x06) !== 0 || b[0] === 0x2e;
      return { cdb: b, readLength: 0, writeLength: bytchk ? n * bs : 0, name: 'VERIFY/WRITE AND VERIFY(10)' };
    }
    case 23: {
      const b = c(12);
      b[0] = 0xa3;
      b[1] = rng.pick([0x0c, 0x0d, 0x0a, rng.int(32)]);
      b[2] = rng.pick([0, 1, 2, 3, 0x80, 0x81]);
      b[3] = rng.int(256);
      b.writeUInt32BE(rng.pick([4096, 20, 0, 0x10000]), 6);
      return { cdb: b, readLength: b.readUInt32BE(6), writeLength: 0, name: 'MAINTENANCE IN' };
    }
    case 24: {
      const b = c(16);
      b[0] = 0x84;
      b[1] = rng.pick([0, 3, 1, rng.int(32)]);
      b[2] = rng.int(256);
      b.writeUInt32BE(rng.pick([4096, 44, 0]), 10);
      return { cdb: b, readLength: b.readUInt32BE(10), writeLength: 0, name: 'RECEIVE COPY RESULTS' };
    }
    case 25: {
      // EXTENDED COPY: a header, 0–2 identification CSCDs (random designators) and 0–2 block→block segments.
      const ncscd = rng.range(0, 2);
      const nseg = rng.range(0, 2);
      const p = Buffer.alloc(16 + 32 * ncscd + 28 * nseg);
      p[0] = rng.int(256);
      p[1] = rng.pick([0x18, 0x00, 0x08]);
      p.writeUInt16BE(32 * ncscd, 2);
      p.writeUInt32BE(28 * nseg, 8);
      for (let i = 0; i < ncscd; i++) {
        const o = 16 + 32 * i;
        p[o] = 0xe4;
        p[o + 4] = 1;
        p[o + 5] = 3;
        p[o + 7] = 16;
        // Real NAA designators (the session's LU, and LUs it must not reach) or random ones.
        if (naas.length > 0 && rng.chance(0.7)) rng.pick(naas).copy(p, o + 8);
        else {
          p[o + 8] = 0x60;
          rng.bytes(15).copy(p, o + 9);
        }
        p.writeUIntBE(512, o + 29, 3);
      }
      for (let i = 0; i < nseg; i++) {
        const o = 16 + 32 * ncscd + 28 * i;
        p[o] = 0x02;
        p.writeUInt16BE(24, o + 2);
        p.writeUInt16BE(rng.int(2), o + 4);
        p.writeUInt16BE(rng.int(2), o + 6);
        p.writeUInt16BE(rng.range(0, 16), o + 10);
        p.writeBigUInt64BE(BigInt(lba(rng, blocks)), o + 12);
        p.writeBigUInt64BE(BigInt(lba(rng, blocks)), o + 20);
      }
      const b = c(16);
      b[0] = 0x83;
      b.writeUInt32BE(p.length, 10);
      return { cdb: b, readLength: 0, writeLength: p.length, name: 'EXTENDED COPY' };
    }
    case 26: {
      const b = c(6);
      b[0] = 0x03;
      b[4] = rng.pick([18, 252, 0]);
      return { cdb: b, readLength: b[4]!, writeLength: 0, name: 'REQUEST SENSE' };
    }
    case 27: {
      const b = c(6);
      b[0] = rng.pick([0x16, 0x17, 0x1b, 0x1e]);
      b[4] = rng.int(4);
      return { cdb: b, readLength: 0, writeLength: 0, name: 'RESERVE/RELEASE/START STOP/PREVENT' };
    }
    case 28: {
      // MODE SELECT(6) with a short parameter list.
      const p = rng.chance(0.5)
        ? Buffer.from([0, 0, 0, 0, 0x08, 0x12, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        : rng.bytes(rng.range(0, 24));
      const b = c(6);
      b[0] = 0x15;
      b[1] = 0x10;
      b[4] = p.length;
      return { cdb: b, readLength: 0, writeLength: p.length, name: 'MODE SELECT(6)' };
    }
    case 29: {
      const b = c(12);
      b[0] = rng.pick([0xa8, 0xaa, 0xaf]);
      b.writeUInt32BE(lba(rng, blocks) >>> 0, 2);
      const n = count(rng, 64);
      b.writeUInt32BE(n >>> 0, 6);
      return {
        cdb: b,
        readLength: b[0] === 0xa8 ? small(n) : 0,
        writeLength: b[0] === 0xaa ? small(n) : 0,
        name: 'READ/WRITE/VERIFY(12)',
      };
    }
    case 30: {
      const b = c(16);
      b[0] = rng.pick([0x8b, 0x8e, 0x8f, 0x90, 0x91, 0x9c]);
      b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      b.writeUInt32BE(rng.range(0, 8), 10);
      return {
        cdb: b,
        readLength: 0,
        writeLength: b[0] === 0x8f ? 0 : bs * b.readUInt32BE(10),
        name: '16-byte misc',
      };
    }
    case 31: {
      // A random opcode with a random CDB of a random length (up to an extended CDB).
      const len = rng.pick([6, 10, 12, 16, 16, 16, 32, 260, rng.range(1, 64)]);
      const b = rng.bytes(len);
      return {
        cdb: b,
        readLength: rng.pick([0, 512, 4096]),
        writeLength: rng.pick([0, 0, 512]),
        name: 'random',
      };
    }
    case 32: {
      // A real CDB with random bytes after the opcode.
      const b = rng.bytes(rng.pick([6, 10, 12, 16]));
      b[0] = rng.pick([
        0x00, 0x03, 0x08, 0x0a, 0x12, 0x1a, 0x25, 0x28, 0x2a, 0x35, 0x41, 0x42, 0x5a, 0x5e, 0x5f, 0x83, 0x84,
        0x88, 0x89, 0x8a, 0x93, 0x9e, 0xa0, 0xa3,
      ]);
      return {
        cdb: b,
        readLength: rng.pick([0, 512, 4096]),
        writeLength: rng.pick([0, 512, 1024]),
        name: 'garbled',
      };
    }
    default: {
      // GET LBA STATUS.
      const b = c(16);
      b[0] = 0x9e;
      b[1] = 0x12;
      b.writeBigUInt64BE(BigInt(lba(rng, blocks)), 2);
      b.writeUInt32BE(rng.pick([24, 4096, 8]), 10);
      return { cdb: b, readLength: b.readUInt32BE(10), writeLength: 0, name: 'GET LBA STATUS' };
    }
  }
}

// ---- login ----

export const STANDARD_OFFER: KeyValue[] = [
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['InitialR2T', 'No'],
  ['ImmediateData', 'Yes'],
  ['MaxBurstLength', '262144'],
  ['FirstBurstLength', '65536'],
  ['MaxRecvDataSegmentLength', '65536'],
  ['MaxOutstandingR2T', '1'],
  ['ErrorRecoveryLevel', '0'],
  ['DefaultTime2Retain', '0'],
];

const OPERATIONAL_KEYS = [
  'HeaderDigest',
  'DataDigest',
  'InitialR2T',
  'ImmediateData',
  'MaxBurstLength',
  'FirstBurstLength',
  'MaxRecvDataSegmentLength',
  'MaxOutstandingR2T',
  'ErrorRecoveryLevel',
  'DefaultTime2Wait',
  'DefaultTime2Retain',
  'MaxConnections',
  'DataPDUInOrder',
  'DataSequenceInOrder',
  'IFMarker',
  'OFMarker',
  'OFMarkInt',
  'IFMarkInt',
  'SendTargets',
  'TargetAlias',
  'TargetAddress',
  'TargetPortalGroupTag',
  'AuthMethod',
  'CHAP_A',
  'CHAP_I',
  'CHAP_C',
  'CHAP_N',
  'CHAP_R',
  'SessionType',
  'InitiatorName',
  'TargetName',
  'InitiatorAlias',
  'RDMAExtensions',
  'TaskReporting',
  'iSCSIProtocolLevel',
  'X-com.example.vendor',
  'X#weird',
];

/** A value that is valid, borderline or garbage for some key. */
export function oddValue(rng: Rng): string {
  return rng.pick([
    'Yes',
    'No',
    'None',
    'CRC32C',
    'None,CRC32C',
    'CRC32C,None',
    'CHAP,None',
    'CHAP',
    'None,CHAP',
    'KRB5,SRP,SPKM1',
    '0',
    '1',
    '-1',
    '512',
    '511',
    '8192',
    '16777215',
    '16777216',
    '4294967295',
    '4294967296',
    '99999999999999999999999',
    '0x10',
    '0x',
    '0xZZ',
    '0b',
    '0b====',
    '0bAAAA',
    '1e9',
    'NaN',
    'Infinity',
    '',
    ',',
    ',,,',
    'Reject',
    'Irrelevant',
    'NotUnderstood',
    'All',
    '5',
    '5,7,6,8',
    '999',
    'x'.repeat(rng.range(64, 300)),
    `0x${'ab'.repeat(rng.range(1, 1100))}`,
    `0b${'QUJD'.repeat(rng.range(1, 400))}`,
    '\u00ff\u00fe',
    'a=b=c',
    ' Yes',
    'Yes ',
  ]);
}

/** A text of key=value pairs, partly real keys with odd values, partly garbage. */
export function garbageText(rng: Rng): Buffer {
  const parts: Buffer[] = [];
  const n = rng.range(0, 12);
  for (let i = 0; i < n; i++) {
    const style = rng.int(8);
    if (style < 5) parts.push(Buffer.from(`${rng.pick(OPERATIONAL_KEYS)}=${oddValue(rng)}\0`, 'utf8'));
    else if (style === 5)
      parts.push(Buffer.from(`${rng.bytes(rng.range(1, 20)).toString('latin1')}\0`, 'latin1'));
    else if (style === 6) parts.push(Buffer.from(`${'K'.repeat(rng.range(60, 70))}=v\0`));
    else parts.push(rng.bytes(rng.range(1, 40)));
  }
  return Buffer.concat(parts);
}

/** CHAP_R for a CHAP_A/CHAP_I/CHAP_C challenge, as hex. */
export function chapAnswer(alg: number, id: number, secret: string, challenge: Buffer): string {
  return `0x${chapResponse(alg, id, secret, challenge).toString('hex')}`;
}

// ---- full feature phase ----

/** Target PDUs the full-feature generator learns from (R2Ts to answer, task tags to reuse). */
export type TargetPduView = DecodedPdu;

export interface FullFeatureOptions {
  /** LU capacity in 512-byte blocks. */
  blocks: number;
  /** Probability that a generated PDU gets a byte-level mutation. */
  byteMutation: number;
  /** Probability of a field-level (semantic) mutation. */
  fieldMutation: number;
  /** LUNs to address (the mapped one first); others test masking. */
  luns: readonly number[];
  digests?: DigestOptions;
  /** Allow PDUs that end the session or every session (Logout, TARGET COLD RESET). */
  allowTerminal?: boolean;
  /** TARGET COLD RESET (ends every session of the target); default: allowTerminal. */
  coldReset?: boolean;
  /** Our FirstBurstLength (negotiated) for unsolicited data. */
  firstBurst?: number;
  /** NAA designators EXTENDED COPY may name (reachable LUs and LUs that must stay out of reach). */
  naas?: readonly Buffer[];
}

interface PendingWrite {
  itt: number;
  lun: number;
  total: number;
  sent: number;
}

/**
 * Generates a full-feature-phase PDU stream for one logged-in session: mostly valid traffic with a coherent
 * CmdSN/ITT sequence (so it reaches deep into the session layer), with field-level and byte-level
 * mutations mixed in. Feed it the target's PDUs with {@link learn} so Data-Out can answer real R2Ts.
 */
export class FullFeatureGen {
  cmdSN: number;
  itt = 1;
  expStatSN = 0;
  private readonly r2ts: { itt: number; ttt: number; offset: number; length: number; lun: number }[] = [];
  private readonly writes: PendingWrite[] = [];
  private readonly recentItts: number[] = [];
  private readonly recentTtts: number[] = [];
  generated = 0;
  mutated = 0;

  constructor(
    private readonly rng: Rng,
    private readonly o: FullFeatureOptions,
    firstCmdSN: number,
  ) {
    this.cmdSN = firstCmdSN >>> 0;
  }

  /** Records what the target sent (R2Ts to answer, StatSN). */
  learn(p: TargetPduView): void {
    if ('statSN' in p && typeof p.statSN === 'number' && p.opcode !== 0x25)
      this.expStatSN = (p.statSN + 1) >>> 0;
    if (p.opcode === 0x31) {
      this.r2ts.push({
        itt: p.itt,
        ttt: p.ttt,
        offset: p.bufferOffset,
        length: p.desiredDataTransferLength,
        lun: 0,
      });
      this.recentTtts.push(p.ttt);
      if (this.recentTtts.length > 16) this.recentTtts.shift();
      if (this.r2ts.length > 32) this.r2ts.shift();
    }
    if (p.opcode === 0x20 && p.itt === 0xffffffff) this.pendingPing = p.ttt;
  }

  private pendingPing: number | undefined;

  private nextItt(): number {
    const rng = this.rng;
    if (this.recentItts.length > 0 && rng.chance(0.03)) return rng.pick(this.recentItts); // overlapping ITT
    if (rng.chance(0.01)) return 0xffffffff;
    const itt = this.itt++ >>> 0;
    this.recentItts.push(itt);
    if (this.recentItts.length > 32) this.recentItts.shift();
    return itt;
  }

  private nextCmdSN(immediate: boolean): number {
    const rng = this.rng;
    if (rng.chance(this.o.fieldMutation)) {
      // Outside the window, a duplicate, or far ahead.
      return (
        rng.pick([this.cmdSN - 1, this.cmdSN + 500, this.cmdSN + 0x80000000, rng.u32(), this.cmdSN + 2]) >>> 0
      );
    }
    if (immediate) return this.cmdSN;
    const sn = this.cmdSN;
    this.cmdSN = (this.cmdSN + 1) >>> 0;
    return sn;
  }

  private lun(): number {
    return this.rng.chance(0.9) ? this.o.luns[0]! : this.rng.pick(this.o.luns);
  }

  private lunFieldFor(n: number): bigint {
    if (this.rng.chance(this.o.fieldMutation / 2)) {
      return this.rng.pick([
        0xffffffffffffffffn,
        1n,
        0x0001000000000000n,
        0xc000000000000000n,
        BigInt(this.rng.u32()) << 32n,
      ]);
    }
    return lunField(n);
  }

  /** The next PDU(s) to send, as one buffer. */
  next(): Buffer {
    const rng = this.rng;
    const f = this.o.fieldMutation;
    const d = this.o.digests;
    let parts: Buffer[];
    this.generated++;
    if (this.pendingPing !== undefined && rng.chance(0.8)) {
      const ttt = this.pendingPing;
      this.pendingPing = undefined;
      parts = encodeNopOut(
        { lun: 0n, itt: 0xffffffff, ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN },
        d,
      );
    } else if (this.r2ts.length > 0 && rng.chance(0.6)) {
      parts = this.answerR2T();
    } else if (this.writes.length > 0 && rng.chance(0.3)) {
      parts = this.unsolicited();
    } else {
      const what = rng.weighted<string>([
        [50, 'scsi'],
        [8, 'nop'],
        [5, 'text'],
        [6, 'tmf'],
        [4, 'snack'],
        [4, 'dataout-stray'],
        [0.2, 'login'],
        [this.o.allowTerminal ? 1 : 0, 'logout'],
      ]);
      switch (what) {
        case 'scsi':
          parts = this.scsi();
          break;
        case 'nop': {
          const immediate = rng.chance(0.5);
          const data = rng.chance(0.3) ? rng.payload(rng.pick([1, 3, 100, 4096, 9000])) : undefined;
          parts = encodeNopOut(
            {
              immediate,
              lun: 0n,
              itt: rng.chance(0.05) ? 0xffffffff : this.nextItt(),
              ttt: rng.chance(f) ? rng.u32() : 0xffffffff,
              cmdSN: this.nextCmdSN(immediate),
              expStatSN: this.expStatSN,
              ...(data ? { data } : {}),
            },
            d,
          );
          break;
        }
        case 'text': {
          const immediate = rng.chance(0.7);
          const data = rng.chance(0.5)
            ? encodeText([
                rng.pick<KeyValue>([
                  ['SendTargets', 'All'],
                  ['SendTargets', ''],
                  ['SendTargets', 'iqn.bogus:x'],
                  ['MaxRecvDataSegmentLength', rng.pick(['512', '8192', '262144', '1', '0', 'x'])],
                  ['HeaderDigest', 'CRC32C'],
                  ['X-vendor', 'y'],
                ]),
              ])
            : garbageText(rng);
          const cont = rng.chance(0.15);
          parts = encodeTextRequest(
            {
              immediate,
              final: !cont && rng.chance(0.9),
              continue: cont,
              lun: 0n,
              itt: this.nextItt(),
              ttt: rng.chance(0.8) ? 0xffffffff : rng.pick([...this.recentTtts, rng.u32(), 1]),
              cmdSN: this.nextCmdSN(immediate),
              expStatSN: this.expStatSN,
              data,
            },
            d,
          );
          break;
        }
        case 'tmf': {
          const fn = rng.weighted<number>([
            [8, 1],
            [2, 2],
            [1, 3],
            [2, 4],
            [2, 5],
            [1, 6],
            [(this.o.coldReset ?? this.o.allowTerminal) ? 0.3 : 0, 7],
            [1, 8],
            [1, rng.int(128)],
          ]);
          parts = encodeTaskMgmtRequest(
            {
              immediate: rng.chance(0.8),
              function: fn,
              lun: this.lunFieldFor(this.lun()),
              itt: this.nextItt(),
              referencedTaskTag:
                this.recentItts.length > 0 && rng.chance(0.8) ? rng.pick(this.recentItts) : rng.u32(),
              cmdSN: this.cmdSN,
              expStatSN: this.expStatSN,
              refCmdSN: rng.chance(0.5) ? (this.cmdSN + rng.range(-2, 4)) >>> 0 : rng.u32(),
              expDataSN: rng.int(4),
            },
            d,
          );
          break;
        }
        case 'snack':
          parts = encodeSnackRequest(
            {
              type: rng.int(4),
              lun: 0n,
              itt: rng.pick([...this.recentItts, 0xffffffff]),
              ttt: rng.u32(),
              expStatSN: this.expStatSN,
              begRun: rng.int(4),
              runLength: rng.int(4),
            },
            d,
          );
          break;
        case 'dataout-stray':
          parts = encodeDataOut(
            {
              final: rng.chance(0.5),
              lun: 0n,
              itt: this.recentItts.length > 0 ? rng.pick(this.recentItts) : rng.u32(),
              ttt: rng.chance(0.5) ? 0xffffffff : rng.pick([...this.recentTtts, rng.u32()]),
              expStatSN: this.expStatSN,
              dataSN: rng.int(4),
              bufferOffset: rng.pick([0, 512, 65536, rng.u32()]),
              data: rng.payload(rng.pick([0, 1, 512, 4096])),
            },
            d,
          );
          break;
        case 'login':
          parts = [loginPdu(STANDARD_OFFER, { csg: 1, nsg: 3 })];
          break;
        default:
          parts = encodeLogoutRequest(
            {
              immediate: rng.chance(0.5),
              reasonCode: rng.pick([0, 1, 2, rng.int(128)]),
              itt: this.nextItt(),
              cid: rng.pick([1, 0, 2]),
              cmdSN: this.cmdSN,
              expStatSN: this.expStatSN,
            },
            d,
          );
      }
    }
    let out: Buffer = Buffer.concat(parts);
    if (rng.chance(this.o.byteMutation)) {
      this.mutated++;
      out = mutateBytes(rng, out);
    }
    return out;
  }

  private scsi(): Buffer[] {
    const rng = this.rng;
    const f = this.o.fieldMutation;
    const c = randomCdb(rng, this.o.blocks, this.o.naas);
    const immediate = rng.chance(0.1);
    const lun = this.lun();
    const itt = this.nextItt();
    let edtl = c.readLength + c.writeLength;
    if (rng.chance(f))
      edtl =
        rng.pick([0, 1, edtl * 2, edtl >>> 1, 0xffffffff, 0x10000000, 16 * 1024 * 1024, rng.u32()]) >>> 0;
    const read = c.readLength > 0 || (rng.chance(f) && rng.chance(0.5));
    const write = c.writeLength > 0 || (rng.chance(f) && rng.chance(0.5));
    const firstBurst = this.o.firstBurst ?? 65536;
    // Immediate data: up to FirstBurstLength (sometimes beyond, or on a read).
    let immLen = 0;
    if (write && edtl > 0) immLen = Math.min(edtl, firstBurst, rng.pick([edtl, 512, 0, 4096]));
    if (rng.chance(f)) immLen = rng.pick([edtl + 512, firstBurst + 512, 8192, 1]);
    immLen = Math.min(immLen, 256 * 1024);
    const data = immLen > 0 ? rng.payload(immLen) : undefined;
    const final = rng.chance(0.85) || !write;
    const parts = encodeScsiCommand(
      {
        immediate,
        final: rng.chance(f) ? !final : final,
        read,
        write,
        attr: rng.chance(0.9) ? 1 : rng.int(8),
        lun: this.lunFieldFor(lun),
        itt,
        expectedDataTransferLength: edtl,
        cmdSN: this.nextCmdSN(immediate),
        expStatSN: this.expStatSN,
        cdb: c.cdb,
        ...(rng.chance(0.03) ? { bidiReadExpectedLength: rng.pick([0, 512, rng.u32()]) } : {}),
        ...(data ? { data } : {}),
      },
      this.o.digests,
    );
    if (write && !final && edtl > immLen)
      this.writes.push({ itt, lun, total: Math.min(edtl, firstBurst), sent: immLen });
    if (this.writes.length > 8) this.writes.shift();
    return parts;
  }

  /** Unsolicited Data-Out for a write sent with F=0. */
  private unsolicited(): Buffer[] {
    const rng = this.rng;
    const f = this.o.fieldMutation;
    const w = this.writes[0]!;
    const n = Math.max(0, Math.min(rng.pick([512, 4096, 8192, 65536]), w.total - w.sent));
    const last = w.sent + n >= w.total || rng.chance(0.1);
    const parts = encodeDataOut(
      {
        final: rng.chance(f) ? !last : last,
        lun: lunField(w.lun),
        itt: rng.chance(f) ? rng.u32() : w.itt,
        ttt: rng.chance(f) ? rng.u32() : 0xffffffff,
        expStatSN: this.expStatSN,
        dataSN: rng.chance(f) ? rng.u32() : Math.floor(w.sent / 8192),
        bufferOffset: rng.chance(f) ? rng.pick([0, w.sent + 1, w.total, rng.u32()]) : w.sent,
        data: rng.payload(rng.chance(f) ? rng.pick([n + 512, 300000, 1]) : n),
      },
      this.o.digests,
    );
    w.sent += n;
    if (last) this.writes.shift();
    return parts;
  }

  /** Data-Out answering a real R2T, with wrong TTT/DataSN/offset/length now and then. */
  private answerR2T(): Buffer[] {
    const rng = this.rng;
    const f = this.o.fieldMutation;
    const r = this.r2ts[0]!;
    const seg = Math.min(r.length, rng.pick([8192, 65536, 262144, r.length]));
    const pieces: Buffer[] = [];
    let sn = 0;
    for (let off = 0; off < r.length; off += seg) {
      const n = Math.min(seg, r.length - off);
      const bad = rng.chance(f);
      pieces.push(
        ...encodeDataOut(
          {
            final: bad && rng.chance(0.3) ? !(off + n >= r.length) : off + n >= r.length,
            lun: 0n,
            itt: bad && rng.chance(0.2) ? rng.u32() : r.itt,
            ttt: bad && rng.chance(0.3) ? rng.pick([0xffffffff, r.ttt + 1, rng.u32()]) : r.ttt,
            expStatSN: this.expStatSN,
            dataSN: bad && rng.chance(0.3) ? rng.pick([sn + 1, 0, rng.u32()]) : sn,
            bufferOffset:
              bad && rng.chance(0.3)
                ? rng.pick([r.offset + off + 1, 0, r.offset + r.length, rng.u32()])
                : r.offset + off,
            data: rng.payload(bad && rng.chance(0.3) ? Math.min(262144, n + rng.pick([1, 512, 4096])) : n),
          },
          this.o.digests,
        ),
      );
      sn++;
      // Sometimes stop half-way (the rest never comes, or comes later as a duplicate).
      if (rng.chance(0.02)) break;
    }
    if (!rng.chance(0.05)) this.r2ts.shift();
    return pieces;
  }
}
