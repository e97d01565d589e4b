/** iSCSI opcodes (RFC 7143 §11.2.1.2): the low 6 bits of BHS byte 0. */
export const Opcode = {
  NopOut: 0x00,
  ScsiCommand: 0x01,
  TaskMgmtRequest: 0x02,
  LoginRequest: 0x03,
  TextRequest: 0x04,
  DataOut: 0x05,
  LogoutRequest: 0x06,
  SnackRequest: 0x10,
  NopIn: 0x20,
  ScsiResponse: 0x21,
  TaskMgmtResponse: 0x22,
  LoginResponse: 0x23,
  TextResponse: 0x24,
  DataIn: 0x25,
  LogoutResponse: 0x26,
  R2T: 0x31,
  AsyncMessage: 0x32,
  Reject: 0x3f,
} as const;

export type OpcodeValue = (typeof Opcode)[keyof typeof Opcode];

/** Opcodes an initiator sends (what a target decodes). */
export const INITIATOR_OPCODES: ReadonlySet<number> = new Set([
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10,
]);
/** Opcodes a target sends (what an initiator decodes). */
export const TARGET_OPCODES: ReadonlySet<number> = new Set([
  0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x31, 0x32, 0x3f,
]);

/** Length of the Basic Header Segment. */
export const BHS_LENGTH = 48;
/** Length of a CRC32C digest on the wire. */
export const DIGEST_LENGTH = 4;
/** The reserved "no tag" value of ITT and TTT. */
export const RESERVED_TAG = 0xffffffff;
/** Largest value the 24-bit DataSegmentLength field can hold. */
export const MAX_DATA_SEGMENT_FIELD = 0xffffff;

/** AHS types (RFC 7143 §11.2.2.2). */
export const AhsType = {
  ExtendedCdb: 1,
  BidiReadLength: 2,
} as const;

/** Reject reasons (RFC 7143 §11.17.1). */
export const RejectReason = {
  DataDigestError: 0x02,
  SnackReject: 0x03,
  ProtocolError: 0x04,
  CommandNotSupported: 0x05,
  ImmediateCommandReject: 0x06,
  TaskInProgress: 0x07,
  InvalidDataAck: 0x08,
  InvalidPduField: 0x09,
  LongOperationReject: 0x0a,
  NegotiationReset: 0x0b,
  WaitingForLogout: 0x0c,
} as const;

/** Login stages carried in CSG/NSG (RFC 7143 §11.12.3); 2 is reserved. */
export const Stage = {
  Security: 0,
  Operational: 1,
  FullFeature: 3,
} as const;

export type StageValue = 0 | 1 | 2 | 3;

/**
 * Login status as (class << 8) | detail (RFC 7143 §11.13.5). Note 0x0205 is "unsupported version";
 * "session type not supported" is 0x0209.
 */
export const LoginStatus = {
  Success: 0x0000,
  TargetMovedTemporarily: 0x0101,
  TargetMovedPermanently: 0x0102,
  InitiatorError: 0x0200,
  AuthenticationFailure: 0x0201,
  AuthorizationFailure: 0x0202,
  TargetNotFound: 0x0203,
  TargetRemoved: 0x0204,
  UnsupportedVersion: 0x0205,
  TooManyConnections: 0x0206,
  MissingParameter: 0x0207,
  CantIncludeInSession: 0x0208,
  SessionTypeNotSupported: 0x0209,
  SessionDoesNotExist: 0x020a,
  InvalidDuringLogin: 0x020b,
  TargetError: 0x0300,
  ServiceUnavailable: 0x0301,
  OutOfResources: 0x0302,
} as const;

/** Task management function codes (RFC 7143 §11.5.1). */
export const TmfFunction = {
  AbortTask: 1,
  AbortTaskSet: 2,
  ClearAca: 3,
  ClearTaskSet: 4,
  LogicalUnitReset: 5,
  TargetWarmReset: 6,
  TargetColdReset: 7,
  TaskReassign: 8,
} as const;

/** Task management responses (RFC 7143 §11.6.1). */
export const TmfResponse = {
  FunctionComplete: 0,
  TaskDoesNotExist: 1,
  LunDoesNotExist: 2,
  TaskStillAllegiant: 3,
  TaskReassignNotSupported: 4,
  NotSupported: 5,
  AuthorizationFailed: 6,
  FunctionRejected: 255,
} as const;

/** Logout reason codes (RFC 7143 §11.14.1). */
export const LogoutReason = {
  CloseSession: 0,
  CloseConnection: 1,
  RemoveConnectionForRecovery: 2,
} as const;

/** Logout responses (RFC 7143 §11.15.1). */
export const LogoutResponseCode = {
  Success: 0,
  CidNotFound: 1,
  RecoveryNotSupported: 2,
  CleanupFailed: 3,
} as const;

/** Async event codes (RFC 7143 §11.9.1). */
export const AsyncEvent = {
  ScsiAsyncEvent: 0,
  LogoutRequested: 1,
  ConnectionDrop: 2,
  SessionDrop: 3,
  NegotiationRequest: 4,
  TaskTermination: 5,
  VendorSpecific: 255,
} as const;

/** SCSI Response "Response" field (RFC 7143 §11.4.3). */
export const ScsiServiceResponse = {
  CommandCompleted: 0x00,
  TargetFailure: 0x01,
} as const;
