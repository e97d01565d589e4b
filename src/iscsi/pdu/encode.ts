import { crc32c, crc32c48 } from '../crc32c.js';
import { AhsType, BHS_LENGTH, MAX_DATA_SEGMENT_FIELD, Opcode, RESERVED_TAG } from './constants.js';
import type {
  AsyncMessagePdu,
  DataInPdu,
  DataOutPdu,
  DigestOptions,
  LoginRequestPdu,
  LoginResponsePdu,
  LogoutRequestPdu,
  LogoutResponsePdu,
  NopInPdu,
  NopOutPdu,
  Pdu,
  R2TPdu,
  RejectPdu,
  ScsiCommandPdu,
  ScsiResponsePdu,
  SnackRequestPdu,
  TaskMgmtRequestPdu,
  TaskMgmtResponsePdu,
  TextRequestPdu,
  TextResponsePdu,
} from './types.js';

/**
 * Encoders return the PDU as separate buffers: [header(+AHS+header digest), data, padding+data digest],
 * leaving out empty parts. The data segment is passed through untouched, so a 1 MiB read payload is never
 * copied; hand the array to socket.cork()/write() or writev.
 */
export type EncodedPdu = Buffer[];

type Opts = DigestOptions | undefined;

const PAD: readonly Buffer[] = [Buffer.alloc(0), Buffer.alloc(1), Buffer.alloc(2), Buffer.alloc(3)];

/** A zeroed header with byte 0, byte 1, TotalAHSLength and DataSegmentLength filled in. */
function newHeader(byte0: number, byte1: number, ahsLength: number, dataLength: number, opts: Opts): Buffer {
  if (dataLength > MAX_DATA_SEGMENT_FIELD)
    throw new RangeError(`data segment of ${dataLength} bytes is too long`);
  // Buffer.alloc (zeroed) measured faster than allocUnsafe + fill for 48-byte headers.
  const h = Buffer.alloc(BHS_LENGTH + ahsLength + (opts?.headerDigest ? 4 : 0));
  h[0] = byte0;
  h[1] = byte1;
  h[4] = ahsLength >>> 2;
  h[5] = dataLength >>> 16;
  h[6] = (dataLength >>> 8) & 0xff;
  h[7] = dataLength & 0xff;
  return h;
}

/** Appends the header digest and assembles the buffer list with padding and data digest. */
function finish(h: Buffer, data: Buffer | undefined, opts: Opts): EncodedPdu {
  if (opts?.headerDigest) {
    const covered = h.length - 4;
    h.writeUInt32LE(covered === BHS_LENGTH ? crc32c48(h) : crc32c(h.subarray(0, covered)), covered);
  }
  if (!data || data.length === 0) return [h];
  const pad = (4 - (data.length & 3)) & 3;
  if (opts?.dataDigest) {
    const trailer = Buffer.alloc(pad + 4);
    let crc = crc32c(data);
    if (pad > 0) crc = crc32c(PAD[pad]!, crc);
    trailer.writeUInt32LE(crc, pad);
    return [h, data, trailer];
  }
  return pad > 0 ? [h, data, PAD[pad]!] : [h, data];
}

const u32 = (n: number | undefined) => (n ?? 0) >>> 0;

// Plain byte stores: about 4x faster than Buffer#writeUInt32BE with its argument checks (encode hot path).
function w32(h: Buffer, o: number, v: number): void {
  h[o] = v >>> 24;
  h[o + 1] = (v >>> 16) & 0xff;
  h[o + 2] = (v >>> 8) & 0xff;
  h[o + 3] = v & 0xff;
}

function w16(h: Buffer, o: number, v: number): void {
  h[o] = (v >>> 8) & 0xff;
  h[o + 1] = v & 0xff;
}

function writeLun(h: Buffer, lun: bigint | undefined): void {
  if (lun) h.writeBigUInt64BE(BigInt.asUintN(64, lun), 8);
}

// The field helpers below take plain numbers rather than the PDU object, so each stays monomorphic however
// many PDU types call it, and V8 inlines it into the encoder.

/** Writes the Initiator Task Tag and the tag after it (bytes 16-23): TTT, Referenced Task Tag or SNACK Tag. */
function writeTags(h: Buffer, itt: number | undefined, tag: number | undefined): void {
  w32(h, 16, u32(itt));
  w32(h, 20, u32(tag));
}

/** Writes an initiator request's CmdSN and ExpStatSN (bytes 24-31). */
function writeCmdSNs(h: Buffer, cmdSN: number | undefined, expStatSN: number | undefined): void {
  w32(h, 24, u32(cmdSN));
  w32(h, 28, u32(expStatSN));
}

/** Writes a target response's StatSN, ExpCmdSN and MaxCmdSN (bytes 24-35). */
function writeStatSNs(
  h: Buffer,
  statSN: number | undefined,
  expCmdSN: number | undefined,
  maxCmdSN: number | undefined,
): void {
  w32(h, 24, u32(statSN));
  w32(h, 28, u32(expCmdSN));
  w32(h, 32, u32(maxCmdSN));
}

/** Writes the fields Login Request and Response share: version bytes, ISID, TSIH and ITT. */
function writeLoginIds(
  h: Buffer,
  versionMax: number,
  versionOther: number,
  isid: Buffer,
  tsih: number,
  itt: number,
): void {
  h[2] = versionMax;
  h[3] = versionOther;
  isid.copy(h, 8, 0, 6);
  w16(h, 14, tsih & 0xffff);
  w32(h, 16, u32(itt));
}

/** NOP-Out (initiator). */
export function encodeNopOut(p: Omit<NopOutPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.NopOut | (p.immediate ? 0x40 : 0), 0x80, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  return finish(h, p.data, opts);
}

/** SCSI Command (initiator); a CDB longer than 16 bytes goes into an Extended CDB AHS. */
export function encodeScsiCommand(p: Omit<ScsiCommandPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const extra = Math.max(0, p.cdb.length - 16);
  const extAhs = extra > 0 ? (4 + extra + 3) & ~3 : 0;
  const bidiAhs = p.bidiReadExpectedLength !== undefined ? 8 : 0;
  const ahsLength = extAhs + bidiAhs;
  if (ahsLength > 1020) throw new RangeError('CDB too long');
  const b1 = (p.final ? 0x80 : 0) | (p.read ? 0x40 : 0) | (p.write ? 0x20 : 0) | ((p.attr ?? 0) & 7);
  const h = newHeader(
    Opcode.ScsiCommand | (p.immediate ? 0x40 : 0),
    b1,
    ahsLength,
    p.data?.length ?? 0,
    opts,
  );
  writeLun(h, p.lun);
  w32(h, 16, u32(p.itt));
  w32(h, 20, u32(p.expectedDataTransferLength));
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  p.cdb.copy(h, 32, 0, Math.min(16, p.cdb.length));
  let off = BHS_LENGTH;
  if (extra > 0) {
    w16(h, off, extra + 1);
    h[off + 2] = AhsType.ExtendedCdb;
    p.cdb.copy(h, off + 4, 16);
    off += extAhs;
  }
  if (bidiAhs > 0) {
    w16(h, off, 5);
    h[off + 2] = AhsType.BidiReadLength;
    w32(h, off + 4, u32(p.bidiReadExpectedLength));
  }
  return finish(h, p.data, opts);
}

/** Task Management Function Request (initiator). */
export function encodeTaskMgmtRequest(
  p: Omit<TaskMgmtRequestPdu, 'opcode'>,
  opts?: DigestOptions,
): EncodedPdu {
  const h = newHeader(
    Opcode.TaskMgmtRequest | (p.immediate ? 0x40 : 0),
    0x80 | (p.function & 0x7f),
    0,
    0,
    opts,
  );
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.referencedTaskTag);
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  w32(h, 32, u32(p.refCmdSN));
  w32(h, 36, u32(p.expDataSN));
  return finish(h, undefined, opts);
}

function loginFlags(p: { transit?: boolean; continue?: boolean; csg: number; nsg: number }): number {
  return (p.transit ? 0x80 : 0) | (p.continue ? 0x40 : 0) | ((p.csg & 3) << 2) | (p.nsg & 3);
}

/** Login Request (initiator); the I bit is always set (RFC 7143 §11.12). */
export function encodeLoginRequest(p: Omit<LoginRequestPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.LoginRequest | 0x40, loginFlags(p), 0, p.data?.length ?? 0, opts);
  writeLoginIds(h, p.versionMax, p.versionMin, p.isid, p.tsih, p.itt);
  w16(h, 20, p.cid & 0xffff);
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  return finish(h, p.data, opts);
}

/** Text Request (initiator). */
export function encodeTextRequest(p: Omit<TextRequestPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const b1 = (p.final ? 0x80 : 0) | (p.continue ? 0x40 : 0);
  const h = newHeader(Opcode.TextRequest | (p.immediate ? 0x40 : 0), b1, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  return finish(h, p.data, opts);
}

/** SCSI Data-Out (initiator). */
export function encodeDataOut(p: Omit<DataOutPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.DataOut, p.final ? 0x80 : 0, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  w32(h, 28, u32(p.expStatSN));
  w32(h, 36, u32(p.dataSN));
  w32(h, 40, u32(p.bufferOffset));
  return finish(h, p.data, opts);
}

/** Logout Request (initiator). */
export function encodeLogoutRequest(p: Omit<LogoutRequestPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(
    Opcode.LogoutRequest | (p.immediate ? 0x40 : 0),
    0x80 | (p.reasonCode & 0x7f),
    0,
    0,
    opts,
  );
  w32(h, 16, u32(p.itt));
  w16(h, 20, p.cid & 0xffff);
  writeCmdSNs(h, p.cmdSN, p.expStatSN);
  return finish(h, undefined, opts);
}

/** SNACK Request (initiator). */
export function encodeSnackRequest(p: Omit<SnackRequestPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.SnackRequest, 0x80 | (p.type & 0x0f), 0, 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  w32(h, 28, u32(p.expStatSN));
  w32(h, 40, u32(p.begRun));
  w32(h, 44, u32(p.runLength));
  return finish(h, undefined, opts);
}

/** NOP-In (target): echo ITT and data for a ping; ITT 0xffffffff and a TTT of ours to ping the initiator. */
export function encodeNopIn(p: Omit<NopInPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.NopIn, 0x80, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  return finish(h, p.data, opts);
}

/** SCSI Response (target). Data, if any, is SenseLength + sense data, built by the caller. */
export function encodeScsiResponse(p: Omit<ScsiResponsePdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const b1 =
    0x80 |
    (p.bidiOverflow ? 0x10 : 0) |
    (p.bidiUnderflow ? 0x08 : 0) |
    (p.overflow ? 0x04 : 0) |
    (p.underflow ? 0x02 : 0);
  const h = newHeader(Opcode.ScsiResponse, b1, 0, p.data?.length ?? 0, opts);
  h[2] = p.response;
  h[3] = p.status;
  writeTags(h, p.itt, p.snackTag);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  w32(h, 36, u32(p.expDataSN));
  w32(h, 40, u32(p.bidiReadResidualCount));
  w32(h, 44, u32(p.residualCount));
  return finish(h, p.data, opts);
}

/** Task Management Function Response (target). */
export function encodeTaskMgmtResponse(
  p: Omit<TaskMgmtResponsePdu, 'opcode'>,
  opts?: DigestOptions,
): EncodedPdu {
  const h = newHeader(Opcode.TaskMgmtResponse, 0x80, 0, 0, opts);
  h[2] = p.response;
  w32(h, 16, u32(p.itt));
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  return finish(h, undefined, opts);
}

/** Login Response (target). */
export function encodeLoginResponse(p: Omit<LoginResponsePdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.LoginResponse, loginFlags(p), 0, p.data?.length ?? 0, opts);
  writeLoginIds(h, p.versionMax, p.versionActive, p.isid, p.tsih, p.itt);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  h[36] = p.statusClass;
  h[37] = p.statusDetail;
  return finish(h, p.data, opts);
}

/** Text Response (target). */
export function encodeTextResponse(p: Omit<TextResponsePdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const b1 = (p.final ? 0x80 : 0) | (p.continue ? 0x40 : 0);
  const h = newHeader(Opcode.TextResponse, b1, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  return finish(h, p.data, opts);
}

/**
 * SCSI Data-In (target), the read hot path. StatSN and status are written only with statusPresent;
 * TTT defaults to 0xffffffff (no acknowledgement requested).
 */
export function encodeDataIn(
  p: Omit<DataInPdu, 'opcode'>,
  opts?: DigestOptions,
  /** DataSegmentLength when the data travels separately (zero-copy Data-In): the header alone is returned. */
  dataLength?: number,
): EncodedPdu {
  const s = p.statusPresent === true;
  const b1 =
    (p.final || s ? 0x80 : 0) |
    (p.acknowledge ? 0x40 : 0) |
    (s && p.overflow ? 0x04 : 0) |
    (s && p.underflow ? 0x02 : 0) |
    (s ? 0x01 : 0);
  const h = newHeader(Opcode.DataIn, b1, 0, dataLength ?? p.data?.length ?? 0, opts);
  if (s) h[3] = p.status ?? 0;
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt === undefined ? RESERVED_TAG : p.ttt);
  // The header is zeroed, so StatSN 0 leaves the field as it is without status.
  writeStatSNs(h, s ? p.statSN : 0, p.expCmdSN, p.maxCmdSN);
  w32(h, 36, u32(p.dataSN));
  w32(h, 40, u32(p.bufferOffset));
  if (s) w32(h, 44, u32(p.residualCount));
  return finish(h, p.data, opts);
}

/** Logout Response (target). */
export function encodeLogoutResponse(p: Omit<LogoutResponsePdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.LogoutResponse, 0x80, 0, 0, opts);
  h[2] = p.response;
  w32(h, 16, u32(p.itt));
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  w16(h, 40, (p.time2Wait ?? 0) & 0xffff);
  w16(h, 42, (p.time2Retain ?? 0) & 0xffff);
  return finish(h, undefined, opts);
}

/** Ready To Transfer (target). */
export function encodeR2T(p: Omit<R2TPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.R2T, 0x80, 0, 0, opts);
  writeLun(h, p.lun);
  writeTags(h, p.itt, p.ttt);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  w32(h, 36, u32(p.r2tSN));
  w32(h, 40, u32(p.bufferOffset));
  w32(h, 44, u32(p.desiredDataTransferLength));
  return finish(h, undefined, opts);
}

/** Asynchronous Message (target); the ITT field is always 0xffffffff. */
export function encodeAsyncMessage(p: Omit<AsyncMessagePdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.AsyncMessage, 0x80, 0, p.data?.length ?? 0, opts);
  writeLun(h, p.lun);
  w32(h, 16, RESERVED_TAG);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  h[36] = p.asyncEvent;
  h[37] = p.asyncVCode ?? 0;
  w16(h, 38, (p.parameter1 ?? 0) & 0xffff);
  w16(h, 40, (p.parameter2 ?? 0) & 0xffff);
  w16(h, 42, (p.parameter3 ?? 0) & 0xffff);
  return finish(h, p.data, opts);
}

/** Reject (target); `data` must be the rejected PDU's 48-byte BHS. The ITT field is always 0xffffffff. */
export function encodeReject(p: Omit<RejectPdu, 'opcode'>, opts?: DigestOptions): EncodedPdu {
  const h = newHeader(Opcode.Reject, 0x80, 0, p.data?.length ?? 0, opts);
  h[2] = p.reason;
  w32(h, 16, RESERVED_TAG);
  writeStatSNs(h, p.statSN, p.expCmdSN, p.maxCmdSN);
  w32(h, 36, u32(p.dataSN));
  return finish(h, p.data, opts);
}

/** Encodes any PDU by its opcode. Prefer the specific encoders on hot paths. */
export function encodePdu(p: Pdu, opts?: DigestOptions): EncodedPdu {
  switch (p.opcode) {
    case Opcode.NopOut:
      return encodeNopOut(p, opts);
    case Opcode.ScsiCommand:
      return encodeScsiCommand(p, opts);
    case Opcode.TaskMgmtRequest:
      return encodeTaskMgmtRequest(p, opts);
    case Opcode.LoginRequest:
      return encodeLoginRequest(p, opts);
    case Opcode.TextRequest:
      return encodeTextRequest(p, opts);
    case Opcode.DataOut:
      return encodeDataOut(p, opts);
    case Opcode.LogoutRequest:
      return encodeLogoutRequest(p, opts);
    case Opcode.SnackRequest:
      return encodeSnackRequest(p, opts);
    case Opcode.NopIn:
      return encodeNopIn(p, opts);
    case Opcode.ScsiResponse:
      return encodeScsiResponse(p, opts);
    case Opcode.TaskMgmtResponse:
      return encodeTaskMgmtResponse(p, opts);
    case Opcode.LoginResponse:
      return encodeLoginResponse(p, opts);
    case Opcode.TextResponse:
      return encodeTextResponse(p, opts);
    case Opcode.DataIn:
      return encodeDataIn(p, opts);
    case Opcode.LogoutResponse:
      return encodeLogoutResponse(p, opts);
    case Opcode.R2T:
      return encodeR2T(p, opts);
    case Opcode.AsyncMessage:
      return encodeAsyncMessage(p, opts);
    case Opcode.Reject:
      return encodeReject(p, opts);
  }
}

/** Concatenates an encoded PDU into one buffer (tests, login-phase traffic; not the data path). */
export function concatPdu(parts: EncodedPdu): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
