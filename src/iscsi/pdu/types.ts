/**
 * Typed PDUs, one interface per opcode, field names after RFC 7143 §11.
 *
 * The same interfaces serve encoding and decoding: flags and payload are optional so that encoders can be
 * called with only what matters; a decoded PDU (see {@link Decoded}) always has every field, its raw BHS
 * and its data segment. Sequence numbers and tags are unsigned 32-bit numbers; LUN is the raw 64-bit field.
 */

interface PduBase {
  /** Raw 48-byte BHS as received (decoded PDUs). A Reject echoes it back. */
  header?: Buffer;
  /** Data segment, without padding or digest. */
  data?: Buffer;
}

/** Initiator → target: NOP-Out (0x00), a ping or the answer to a target NOP-In. */
export interface NopOutPdu extends PduBase {
  opcode: 0x00;
  immediate?: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

/** Initiator → target: SCSI Command (0x01). */
export interface ScsiCommandPdu extends PduBase {
  opcode: 0x01;
  immediate?: boolean;
  final?: boolean;
  read?: boolean;
  write?: boolean;
  /** Task attribute (0 untagged, 1 simple, 2 ordered, 3 head of queue, 4 ACA). */
  attr?: number;
  lun: bigint;
  itt: number;
  expectedDataTransferLength: number;
  cmdSN: number;
  expStatSN: number;
  /** The whole CDB: 16 bytes from the BHS, followed by the Extended CDB AHS if present. */
  cdb: Buffer;
  /** From the Bidirectional Read Expected Data Transfer Length AHS, if present. */
  bidiReadExpectedLength?: number;
}

/** Initiator → target: Task Management Function Request (0x02). */
export interface TaskMgmtRequestPdu extends PduBase {
  opcode: 0x02;
  immediate?: boolean;
  /** TmfFunction code. */
  function: number;
  lun: bigint;
  itt: number;
  referencedTaskTag: number;
  cmdSN: number;
  expStatSN: number;
  refCmdSN: number;
  expDataSN: number;
}

/** Initiator → target: Login Request (0x03). */
export interface LoginRequestPdu extends PduBase {
  opcode: 0x03;
  immediate?: boolean;
  transit?: boolean;
  continue?: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionMin: number;
  /** 6-byte ISID. */
  isid: Buffer;
  tsih: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

/** Initiator → target: Text Request (0x04). */
export interface TextRequestPdu extends PduBase {
  opcode: 0x04;
  immediate?: boolean;
  final?: boolean;
  continue?: boolean;
  lun?: bigint;
  itt: number;
  ttt: number;
  cmdSN: number;
  expStatSN: number;
}

/** Initiator → target: SCSI Data-Out (0x05). */
export interface DataOutPdu extends PduBase {
  opcode: 0x05;
  final?: boolean;
  lun: bigint;
  itt: number;
  ttt: number;
  expStatSN: number;
  dataSN: number;
  bufferOffset: number;
}

/** Initiator → target: Logout Request (0x06). */
export interface LogoutRequestPdu extends PduBase {
  opcode: 0x06;
  immediate?: boolean;
  /** LogoutReason code. */
  reasonCode: number;
  itt: number;
  cid: number;
  cmdSN: number;
  expStatSN: number;
}

/** Initiator → target: SNACK Request (0x10). */
export interface SnackRequestPdu extends PduBase {
  opcode: 0x10;
  /** 0 Data/R2T, 1 Status, 2 DataACK, 3 R-Data. */
  type: number;
  lun: bigint;
  itt: number;
  ttt: number;
  expStatSN: number;
  begRun: number;
  runLength: number;
}

/** Target → initiator: NOP-In (0x20). */
export interface NopInPdu extends PduBase {
  opcode: 0x20;
  lun?: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

/** Target → initiator: SCSI Response (0x21). Data is SenseLength(2) + sense + response data, if any. */
export interface ScsiResponsePdu extends PduBase {
  opcode: 0x21;
  bidiOverflow?: boolean;
  bidiUnderflow?: boolean;
  overflow?: boolean;
  underflow?: boolean;
  /** ScsiServiceResponse code. */
  response: number;
  /** SCSI status byte. */
  status: number;
  itt: number;
  snackTag?: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  expDataSN?: number;
  bidiReadResidualCount?: number;
  residualCount?: number;
}

/** Target → initiator: Task Management Function Response (0x22). */
export interface TaskMgmtResponsePdu extends PduBase {
  opcode: 0x22;
  /** TmfResponse code. */
  response: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

/** Target → initiator: Login Response (0x23). */
export interface LoginResponsePdu extends PduBase {
  opcode: 0x23;
  transit?: boolean;
  continue?: boolean;
  csg: number;
  nsg: number;
  versionMax: number;
  versionActive: number;
  isid: Buffer;
  tsih: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  statusClass: number;
  statusDetail: number;
}

/** Target → initiator: Text Response (0x24). */
export interface TextResponsePdu extends PduBase {
  opcode: 0x24;
  final?: boolean;
  continue?: boolean;
  lun?: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
}

/** Target → initiator: SCSI Data-In (0x25). */
export interface DataInPdu extends PduBase {
  opcode: 0x25;
  final?: boolean;
  acknowledge?: boolean;
  overflow?: boolean;
  underflow?: boolean;
  /** S bit: this PDU carries the command's status (phase collapse). */
  statusPresent?: boolean;
  /** SCSI status byte; valid only with statusPresent. */
  status?: number;
  lun?: bigint;
  itt: number;
  ttt?: number;
  /** Valid only with statusPresent; otherwise sent as 0. */
  statSN?: number;
  expCmdSN: number;
  maxCmdSN: number;
  dataSN: number;
  bufferOffset: number;
  residualCount?: number;
}

/** Target → initiator: Logout Response (0x26). */
export interface LogoutResponsePdu extends PduBase {
  opcode: 0x26;
  /** LogoutResponseCode. */
  response: number;
  itt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  time2Wait?: number;
  time2Retain?: number;
}

/** Target → initiator: Ready To Transfer (0x31). */
export interface R2TPdu extends PduBase {
  opcode: 0x31;
  lun: bigint;
  itt: number;
  ttt: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  r2tSN: number;
  bufferOffset: number;
  desiredDataTransferLength: number;
}

/** Target → initiator: Asynchronous Message (0x32). Data is SenseLength(2) + sense + event data, if any. */
export interface AsyncMessagePdu extends PduBase {
  opcode: 0x32;
  lun?: bigint;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  /** AsyncEvent code. */
  asyncEvent: number;
  asyncVCode?: number;
  parameter1?: number;
  parameter2?: number;
  parameter3?: number;
}

/** Target → initiator: Reject (0x3f). Data is the complete BHS of the rejected PDU. */
export interface RejectPdu extends PduBase {
  opcode: 0x3f;
  /** RejectReason code. */
  reason: number;
  statSN: number;
  expCmdSN: number;
  maxCmdSN: number;
  /** DataSN/R2TSN of a rejected SNACK; 0 otherwise. */
  dataSN?: number;
}

/** Every PDU an initiator sends. */
export type InitiatorPdu =
  | NopOutPdu
  | ScsiCommandPdu
  | TaskMgmtRequestPdu
  | LoginRequestPdu
  | TextRequestPdu
  | DataOutPdu
  | LogoutRequestPdu
  | SnackRequestPdu;

/** Every PDU a target sends. */
export type TargetPdu =
  | NopInPdu
  | ScsiResponsePdu
  | TaskMgmtResponsePdu
  | LoginResponsePdu
  | TextResponsePdu
  | DataInPdu
  | LogoutResponsePdu
  | R2TPdu
  | AsyncMessagePdu
  | RejectPdu;

export type Pdu = InitiatorPdu | TargetPdu;

/** A PDU as the decoder returns it: raw header, AHS and data are always present. */
export type Decoded<T extends Pdu> = T & {
  header: Buffer;
  /** Raw AHS bytes (TotalAHSLength*4), empty when none. */
  ahs: Buffer;
  data: Buffer;
  /**
   * The data segment as views of the receive buffers it arrived in, when the decoder was asked to leave large
   * segments there ({@link DecoderOptions.splitData}) and this one spanned several: the same bytes as `data`,
   * which is then only assembled (copied) if read.
   */
  dataParts?: readonly Buffer[];
  immediate: boolean;
};

type DecodeEach<P> = P extends Pdu ? Decoded<P> : never;
/** Any decoded PDU, discriminated by `opcode`. */
export type DecodedPdu = DecodeEach<Pdu>;

/** Digest settings of one connection and direction. */
export interface DigestOptions {
  headerDigest?: boolean;
  dataDigest?: boolean;
}
