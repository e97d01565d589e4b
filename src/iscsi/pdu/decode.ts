import { crc32c, crc32c48, crc32cRange } from '../crc32c.js';
import {
  AhsType,
  BHS_LENGTH,
  DIGEST_LENGTH,
  INITIATOR_OPCODES,
  Opcode,
  RejectReason,
  TARGET_OPCODES,
} from './constants.js';
import { DataDigestError, HeaderDigestError, ProtocolError, type ProtocolErrorReason } from './errors.js';
import type { Decoded, DecodedPdu, ScsiCommandPdu } from './types.js';

/** Which PDUs the decoder accepts: a target decodes what initiators send, and vice versa. */
export type DecoderRole = 'target' | 'initiator' | 'any';

export interface DecoderOptions {
  /** Default 'target': only initiator opcodes are accepted. */
  role?: DecoderRole;
  /** Largest DataSegmentLength accepted; default 262144 (our default MaxRecvDataSegmentLength). */
  maxDataSegmentLength?: number;
  /** Largest AHS in bytes (TotalAHSLength*4); default 256, enough for a 260-byte CDB plus a bidi AHS. */
  maxAhsLength?: number;
  headerDigest?: boolean;
  dataDigest?: boolean;
  /**
   * Data-Out and SCSI Command PDUs whose data segment (of at least {@link SPLIT_DATA_MIN} bytes) spans
   * receive buffers are not copied together: they come with `dataParts`, views of those buffers, and a `data`
   * that is assembled only when read. The target's write path hands the parts to writev, so a 1 MiB write is
   * never copied in memory. Off by default.
   */
  splitData?: boolean;
}

/** Smallest data segment {@link DecoderOptions.splitData} leaves in place; copying less costs little. */
export const SPLIT_DATA_MIN = 16384;

/** Default DataSegmentLength limit: our default MaxRecvDataSegmentLength. */
export const DEFAULT_DECODER_MAX_DATA_SEGMENT = 262144;
/** Default AHS limit in bytes. */
export const DEFAULT_DECODER_MAX_AHS = 256;

const EMPTY = Buffer.alloc(0);
/** Received chunks below this size are coalesced while buffered (see PduDecoder.push). */
const SMALL_CHUNK = 512;

/** Lengths of the PDU at the front of the buffer, known once its BHS is in. */
interface Layout {
  opcode: number;
  ahsLength: number;
  dataLength: number;
  /** BHS + AHS + header digest. */
  headerLength: number;
  /** Whole PDU on the wire; 0 until the header is verified. */
  total: number;
  dataDigest: boolean;
}

/**
 * Streaming PDU decoder (sans-IO): feed it whatever the socket delivered with {@link push}, then drain
 * complete PDUs with {@link next} (or iterate). PDUs may arrive many per chunk or split at any byte.
 *
 * A PDU contained in one chunk is returned as views into that chunk (no copy: the write hot path);
 * one spanning chunks is copied exactly once (or, with {@link DecoderOptions.splitData}, its large data
 * segment is left in place as `dataParts`). Lengths are checked against the limits as soon as the header
 * is in (and, with header digests on, verified), before any of the data segment is buffered.
 *
 * Errors are thrown from `next()` as {@link ProtocolError}. A fatal one poisons the decoder (every later
 * call throws it again); a non-fatal one has consumed exactly the offending PDU and decoding can resume.
 */
export class PduDecoder {
  private chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private layout: Layout | undefined;
  private failure: ProtocolError | undefined;
  private role: DecoderRole;
  private maxData: number;
  private maxAhs: number;
  private hd: boolean;
  private dd: boolean;
  private readonly splitData: boolean;

  constructor(opts: DecoderOptions = {}) {
    this.role = opts.role ?? 'target';
    this.maxData = opts.maxDataSegmentLength ?? DEFAULT_DECODER_MAX_DATA_SEGMENT;
    this.maxAhs = opts.maxAhsLength ?? DEFAULT_DECODER_MAX_AHS;
    this.hd = opts.headerDigest ?? false;
    this.dd = opts.dataDigest ?? false;
    this.splitData = opts.splitData ?? false;
  }

  /** Appends received bytes. The decoder keeps a reference: the caller must not reuse the buffer. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const last = this.chunks.length - 1;
    // A peer trickling a PDU a byte per read would otherwise cost a Buffer (over 100 bytes) per byte held:
    // small chunks are merged into the previous small one (a copy of at most SMALL_CHUNK bytes).
    if (last >= 0 && chunk.length < SMALL_CHUNK && this.chunks[last]!.length < SMALL_CHUNK) {
      this.chunks[last] = Buffer.concat([this.chunks[last]!, chunk]);
    } else {
      this.chunks.push(chunk);
    }
    this.buffered += chunk.length;
  }

  /**
   * Switches digests for PDUs whose header has not been parsed yet: call it right after handling the
   * final Login Request, before asking for the next PDU.
   */
  setDigests(d: { header: boolean; data: boolean }): void {
    this.hd = d.header;
    this.dd = d.data;
    // The layout is only a cache over bytes not yet consumed, so it can always be recomputed.
    this.layout = undefined;
  }

  /** Changes the limits (e.g. to our declared MaxRecvDataSegmentLength once login completes). */
  setLimits(l: { maxDataSegmentLength?: number; maxAhsLength?: number }): void {
    if (l.maxDataSegmentLength !== undefined) this.maxData = l.maxDataSegmentLength;
    if (l.maxAhsLength !== undefined) this.maxAhs = l.maxAhsLength;
  }

  /** Bytes received but not yet returned as PDUs. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** The next complete PDU, or undefined when more bytes are needed. Throws {@link ProtocolError}. */
  next(): DecodedPdu | undefined {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof ProtocolError) {
        if (err.fatal) this.failure = err;
        throw err;
      }
      // Not expected; still never let a stray exception escape as anything but a protocol failure.
      const e = new ProtocolError('decoder-failed', `decoder failure: ${(err as Error).message}`, {
        fatal: true,
      });
      this.failure = e;
      throw e;
    }
  }

  /** Iterates over the complete PDUs available now; stops at the first error (thrown). */
  *[Symbol.iterator](): IterableIterator<DecodedPdu> {
    for (let p = this.next(); p !== undefined; p = this.next()) yield p;
  }

  private step(): DecodedPdu | undefined {
    let lay = this.layout;
    if (!lay) {
      if (this.buffered < BHS_LENGTH) return undefined;
      const first = this.chunks[0]!;
      const b4 = this.byteAt(first, 4);
      const ahsLength = b4 * 4;
      const dataLength = (this.byteAt(first, 5) << 16) | (this.byteAt(first, 6) << 8) | this.byteAt(first, 7);
      const opcode = this.byteAt(first, 0) & 0x3f;
      if (ahsLength > this.maxAhs) {
        throw new ProtocolError('ahs-too-long', `TotalAHSLength ${ahsLength} bytes exceeds ${this.maxAhs}`, {
          fatal: true,
          opcode,
        });
      }
      lay = {
        opcode,
        ahsLength,
        dataLength,
        headerLength: BHS_LENGTH + ahsLength + (this.hd ? DIGEST_LENGTH : 0),
        total: 0,
        dataDigest: this.dd,
      };
      this.layout = lay;
    }

    if (lay.total === 0) {
      if (this.buffered < lay.headerLength) return undefined;
      if (lay.headerLength > BHS_LENGTH + lay.ahsLength) {
        const covered = BHS_LENGTH + lay.ahsLength;
        const hdr = this.peek(lay.headerLength);
        // The usual header is the bare 48-byte BHS: the unrolled CRC for it.
        const want = covered === BHS_LENGTH ? crc32c48(hdr) : crc32cRange(hdr, 0, covered);
        const got = hdr.readUInt32LE(covered);
        if (want !== got) throw new HeaderDigestError(want, got);
      }
      if (lay.dataLength > this.maxData) {
        const bhs = Buffer.from(this.peek(BHS_LENGTH));
        throw new ProtocolError(
          'data-segment-too-long',
          `DataSegmentLength ${lay.dataLength} exceeds ${this.maxData}`,
          { fatal: true, opcode: lay.opcode, itt: bhs.readUInt32BE(16), header: bhs },
        );
      }
      lay.total =
        lay.headerLength +
        ((lay.dataLength + 3) & ~3) +
        (lay.dataDigest && lay.dataLength > 0 ? DIGEST_LENGTH : 0);
    }

    if (this.buffered < lay.total) return undefined;
    if (
      this.splitData &&
      lay.dataLength >= SPLIT_DATA_MIN &&
      (lay.opcode === Opcode.DataOut || lay.opcode === Opcode.ScsiCommand) &&
      this.chunks[0]!.length - this.head < lay.total
    ) {
      return this.stepSplit(lay);
    }
    const pdu = this.take(lay.total);
    this.layout = undefined;

    const dataEnd = lay.headerLength + lay.dataLength;
    const data = lay.dataLength > 0 ? pdu.subarray(lay.headerLength, dataEnd) : EMPTY;
    let want = 0;
    let got = 0;
    if (lay.dataDigest && lay.dataLength > 0) {
      const padded = lay.headerLength + ((lay.dataLength + 3) & ~3);
      want = crc32cRange(pdu, lay.headerLength, padded);
      got = pdu.readUInt32LE(padded);
    }
    return this.parseChecked(lay, pdu, data, want, got);
  }

  /**
   * Parses a framed PDU whose data digest (want/got, both 0 when off) has been computed: `head` starts with
   * the BHS and AHS. The digest is checked before the role so a corrupted PDU reports as such.
   */
  private parseChecked(lay: Layout, head: Buffer, data: Buffer, want: number, got: number): DecodedPdu {
    const header = head.subarray(0, BHS_LENGTH);
    const ahs = lay.ahsLength > 0 ? head.subarray(BHS_LENGTH, BHS_LENGTH + lay.ahsLength) : EMPTY;
    if (want !== got) throw new DataDigestError(want, got, lay.opcode, header.readUInt32BE(16), header);
    this.checkRole(lay.opcode, header);
    return parsePdu(header, ahs, data);
  }

  /**
   * A PDU whose large data segment spans receive buffers ({@link DecoderOptions.splitData}): the header is
   * taken as usual (small), the data segment as views, and the same checks as {@link step} apply.
   */
  private stepSplit(lay: Layout): DecodedPdu {
    const head = this.take(lay.headerLength);
    const parts = this.takeViews(lay.dataLength);
    const tailLength = lay.total - lay.headerLength - lay.dataLength;
    const tail = tailLength > 0 ? this.take(tailLength) : EMPTY;
    this.layout = undefined;
    let want = 0;
    let got = 0;
    if (lay.dataDigest) {
      const pad = (4 - (lay.dataLength & 3)) & 3;
      for (const p of parts) want = crc32c(p, want);
      if (pad > 0) want = crc32cRange(tail, 0, pad, want);
      got = tail.readUInt32LE(pad);
    }
    const pdu = this.parseChecked(lay, head, EMPTY, want, got);
    const length = lay.dataLength;
    let joined: Buffer | undefined;
    Object.defineProperty(pdu, 'data', {
      get: () => {
        joined ??= Buffer.concat(parts, length);
        return joined;
      },
      enumerable: true,
      configurable: true,
    });
    pdu.dataParts = parts;
    return pdu;
  }

  private checkRole(opcode: number, header: Buffer): void {
    const allowed =
      this.role === 'target'
        ? INITIATOR_OPCODES.has(opcode)
        : this.role === 'initiator'
          ? TARGET_OPCODES.has(opcode)
          : INITIATOR_OPCODES.has(opcode) || TARGET_OPCODES.has(opcode);
    if (!allowed) {
      throw rejectable(
        'bad-opcode',
        `unexpected opcode 0x${opcode.toString(16)}`,
        opcode,
        header,
        RejectReason.ProtocolError,
      );
    }
  }

  /** Consumes the first n buffered bytes as views of the chunks holding them (no copy). */
  private takeViews(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const ch = this.chunks[0]!;
      const avail = ch.length - this.head;
      if (avail <= n) {
        out.push(this.head === 0 ? ch : ch.subarray(this.head));
        this.chunks.shift();
        this.head = 0;
        this.buffered -= avail;
        n -= avail;
      } else {
        out.push(ch.subarray(this.head, this.head + n));
        this.head += n;
        this.buffered -= n;
        n = 0;
      }
    }
    return out;
  }

  private byteAt(first: Buffer, i: number): number {
    const j = this.head + i;
    if (j < first.length) return first[j]!;
    let rest = j - first.length;
    for (let c = 1; c < this.chunks.length; c++) {
      const ch = this.chunks[c]!;
      if (rest < ch.length) return ch[rest]!;
      rest -= ch.length;
    }
    return 0; // unreachable: callers check `buffered` first
  }

  /** The first n buffered bytes, contiguous, without consuming them (copies only when split). */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.head >= n) return first.subarray(this.head, this.head + n);
    return this.gather(n);
  }

  /** Consumes and returns the first n bytes: a view when they sit in one chunk, else one copy. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    const avail = first.length - this.head;
    if (avail >= n) {
      const out = first.subarray(this.head, this.head + n);
      if (avail === n) {
        this.chunks.shift();
        this.head = 0;
      } else {
        this.head += n;
      }
      this.buffered -= n;
      return out;
    }
    const out = this.gather(n);
    let left = n;
    while (left > 0) {
      const ch = this.chunks[0]!;
      const av = ch.length - this.head;
      if (av <= left) {
        left -= av;
        this.chunks.shift();
        this.head = 0;
      } else {
        this.head += left;
        left = 0;
      }
    }
    this.buffered -= n;
    return out;
  }

  private gather(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    let start = this.head;
    for (let c = 0; off < n; c++) {
      const ch = this.chunks[c]!;
      const len = Math.min(ch.length - start, n - off);
      ch.copy(out, off, start, start + len);
      off += len;
      start = 0;
    }
    return out;
  }
}

/**
 * Decodes exactly one complete PDU held in `buf` (BHS, AHS, digests and padding included).
 * Throws {@link ProtocolError} when it is malformed, truncated, or followed by extra bytes.
 */
export function decodePdu(buf: Buffer, opts: DecoderOptions = {}): DecodedPdu {
  const dec = new PduDecoder({ role: 'any', maxDataSegmentLength: 0xffffff, maxAhsLength: 1020, ...opts });
  dec.push(buf);
  const pdu = dec.next();
  if (!pdu || dec.bufferedBytes !== 0) {
    throw new ProtocolError('bad-field', pdu ? 'trailing bytes after PDU' : 'truncated PDU', { fatal: true });
  }
  return pdu;
}

/** A non-fatal error for one PDU, answered with a Reject carrying `rejectReason` and the PDU's header. */
function rejectable(
  reason: ProtocolErrorReason,
  message: string,
  opcode: number,
  header: Buffer,
  rejectReason: number,
): ProtocolError {
  return new ProtocolError(reason, message, {
    fatal: false,
    opcode,
    itt: header.readUInt32BE(16),
    header,
    rejectReason,
  });
}

function badField(message: string, opcode: number, header: Buffer): ProtocolError {
  return rejectable('bad-field', message, opcode, header, RejectReason.InvalidPduField);
}

function badAhs(message: string, opcode: number, header: Buffer): ProtocolError {
  return rejectable('bad-ahs', message, opcode, header, RejectReason.ProtocolError);
}

const NO_DATA_OPCODES = new Set<number>([
  Opcode.TaskMgmtRequest,
  Opcode.LogoutRequest,
  Opcode.SnackRequest,
  Opcode.TaskMgmtResponse,
  Opcode.LogoutResponse,
  Opcode.R2T,
]);

/**
 * Parses the fields of a framed PDU. `header` is the 48-byte BHS; `ahs` and `data` are already stripped of
 * padding and digests. Throws a non-fatal {@link ProtocolError} for field values the PDU type forbids.
 */
export function parsePdu(header: Buffer, ahs: Buffer, data: Buffer): DecodedPdu {
  const b0 = header[0]!;
  const b1 = header[1]!;
  const opcode = b0 & 0x3f;
  const immediate = (b0 & 0x40) !== 0;
  const final = (b1 & 0x80) !== 0;
  if (NO_DATA_OPCODES.has(opcode) && data.length > 0) {
    throw badField(`opcode 0x${opcode.toString(16)} must not carry data`, opcode, header);
  }
  const u32 = (o: number) => header.readUInt32BE(o);
  switch (opcode) {
    case Opcode.NopOut:
      return {
        opcode: Opcode.NopOut,
        immediate,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        header,
        ahs,
        data,
      };
    case Opcode.ScsiCommand: {
      let cdb = header.subarray(32, 48);
      let bidiReadExpectedLength: number | undefined;
      if (ahs.length > 0) {
        let off = 0;
        while (off < ahs.length) {
          if (off + 4 > ahs.length) throw badAhs('truncated AHS', opcode, header);
          const len = ahs.readUInt16BE(off);
          const type = ahs[off + 2]!;
          const end = off + 3 + len;
          if (end > ahs.length) throw badAhs('AHS longer than TotalAHSLength', opcode, header);
          if (type === AhsType.ExtendedCdb) {
            if (len < 2) throw badAhs('empty extended CDB AHS', opcode, header);
            cdb = Buffer.concat([cdb, ahs.subarray(off + 4, end)]);
          } else if (type === AhsType.BidiReadLength) {
            if (len !== 5) throw badAhs('bidirectional read AHS must have length 5', opcode, header);
            bidiReadExpectedLength = ahs.readUInt32BE(off + 4);
          } else if (type < 60) {
            throw badAhs(`reserved AHS type ${type}`, opcode, header);
          }
          off = (end + 3) & ~3;
        }
      }
      const pdu: Decoded<ScsiCommandPdu> = {
        opcode: Opcode.ScsiCommand,
        immediate,
        final,
        read: (b1 & 0x40) !== 0,
        write: (b1 & 0x20) !== 0,
        attr: b1 & 0x07,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        expectedDataTransferLength: u32(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        cdb,
        header,
        ahs,
        data,
      };
      if (bidiReadExpectedLength !== undefined) pdu.bidiReadExpectedLength = bidiReadExpectedLength;
      return pdu;
    }
    case Opcode.TaskMgmtRequest:
      return {
        opcode: Opcode.TaskMgmtRequest,
        immediate,
        function: b1 & 0x7f,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        referencedTaskTag: u32(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        refCmdSN: u32(32),
        expDataSN: u32(36),
        header,
        ahs,
        data,
      };
    case Opcode.LoginRequest:
      return {
        opcode: Opcode.LoginRequest,
        immediate,
        transit: final,
        continue: (b1 & 0x40) !== 0,
        csg: (b1 >> 2) & 3,
        nsg: b1 & 3,
        versionMax: header[2]!,
        versionMin: header[3]!,
        isid: header.subarray(8, 14),
        tsih: header.readUInt16BE(14),
        itt: u32(16),
        cid: header.readUInt16BE(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        header,
        ahs,
        data,
      };
    case Opcode.TextRequest:
      return {
        opcode: Opcode.TextRequest,
        immediate,
        final,
        continue: (b1 & 0x40) !== 0,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        header,
        ahs,
        data,
      };
    case Opcode.DataOut:
      return {
        opcode: Opcode.DataOut,
        immediate,
        final,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        expStatSN: u32(28),
        dataSN: u32(36),
        bufferOffset: u32(40),
        header,
        ahs,
        data,
      };
    case Opcode.LogoutRequest:
      return {
        opcode: Opcode.LogoutRequest,
        immediate,
        reasonCode: b1 & 0x7f,
        itt: u32(16),
        cid: header.readUInt16BE(20),
        cmdSN: u32(24),
        expStatSN: u32(28),
        header,
        ahs,
        data,
      };
    case Opcode.SnackRequest:
      return {
        opcode: Opcode.SnackRequest,
        immediate,
        type: b1 & 0x0f,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        expStatSN: u32(28),
        begRun: u32(40),
        runLength: u32(44),
        header,
        ahs,
        data,
      };
    case Opcode.NopIn:
      return {
        opcode: Opcode.NopIn,
        immediate,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        header,
        ahs,
        data,
      };
    case Opcode.ScsiResponse:
      return {
        opcode: Opcode.ScsiResponse,
        immediate,
        bidiOverflow: (b1 & 0x10) !== 0,
        bidiUnderflow: (b1 & 0x08) !== 0,
        overflow: (b1 & 0x04) !== 0,
        underflow: (b1 & 0x02) !== 0,
        response: header[2]!,
        status: header[3]!,
        itt: u32(16),
        snackTag: u32(20),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        expDataSN: u32(36),
        bidiReadResidualCount: u32(40),
        residualCount: u32(44),
        header,
        ahs,
        data,
      };
    case Opcode.TaskMgmtResponse:
      return {
        opcode: Opcode.TaskMgmtResponse,
        immediate,
        response: header[2]!,
        itt: u32(16),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        header,
        ahs,
        data,
      };
    case Opcode.LoginResponse:
      return {
        opcode: Opcode.LoginResponse,
        immediate,
        transit: final,
        continue: (b1 & 0x40) !== 0,
        csg: (b1 >> 2) & 3,
        nsg: b1 & 3,
        versionMax: header[2]!,
        versionActive: header[3]!,
        isid: header.subarray(8, 14),
        tsih: header.readUInt16BE(14),
        itt: u32(16),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        statusClass: header[36]!,
        statusDetail: header[37]!,
        header,
        ahs,
        data,
      };
    case Opcode.TextResponse:
      return {
        opcode: Opcode.TextResponse,
        immediate,
        final,
        continue: (b1 & 0x40) !== 0,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        header,
        ahs,
        data,
      };
    case Opcode.DataIn:
      return {
        opcode: Opcode.DataIn,
        immediate,
        final,
        acknowledge: (b1 & 0x40) !== 0,
        overflow: (b1 & 0x04) !== 0,
        underflow: (b1 & 0x02) !== 0,
        statusPresent: (b1 & 0x01) !== 0,
        status: header[3]!,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        dataSN: u32(36),
        bufferOffset: u32(40),
        residualCount: u32(44),
        header,
        ahs,
        data,
      };
    case Opcode.LogoutResponse:
      return {
        opcode: Opcode.LogoutResponse,
        immediate,
        response: header[2]!,
        itt: u32(16),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        time2Wait: header.readUInt16BE(40),
        time2Retain: header.readUInt16BE(42),
        header,
        ahs,
        data,
      };
    case Opcode.R2T:
      return {
        opcode: Opcode.R2T,
        immediate,
        lun: header.readBigUInt64BE(8),
        itt: u32(16),
        ttt: u32(20),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        r2tSN: u32(36),
        bufferOffset: u32(40),
        desiredDataTransferLength: u32(44),
        header,
        ahs,
        data,
      };
    case Opcode.AsyncMessage:
      return {
        opcode: Opcode.AsyncMessage,
        immediate,
        lun: header.readBigUInt64BE(8),
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        asyncEvent: header[36]!,
        asyncVCode: header[37]!,
        parameter1: header.readUInt16BE(38),
        parameter2: header.readUInt16BE(40),
        parameter3: header.readUInt16BE(42),
        header,
        ahs,
        data,
      };
    case Opcode.Reject:
      return {
        opcode: Opcode.Reject,
        immediate,
        reason: header[2]!,
        statSN: u32(24),
        expCmdSN: u32(28),
        maxCmdSN: u32(32),
        dataSN: u32(36),
        header,
        ahs,
        data,
      };
    default:
      throw rejectable(
        'bad-opcode',
        `reserved opcode 0x${opcode.toString(16)}`,
        opcode,
        header,
        RejectReason.ProtocolError,
      );
  }
}

/** CRC32C digest as it appears on the wire for the given bytes (little-endian u32), for tests and tools. */
export function digestOf(...parts: Uint8Array[]): number {
  let crc = 0;
  for (const p of parts) crc = crc32c(p, crc);
  return crc;
}
