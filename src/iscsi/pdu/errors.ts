import { RejectReason } from './constants.js';

/** Why a PDU could not be accepted. */
export type ProtocolErrorReason =
  /** Opcode reserved, unknown, or not one this side of the connection may receive. */
  | 'bad-opcode'
  /** DataSegmentLength above the negotiated/configured limit. */
  | 'data-segment-too-long'
  /** TotalAHSLength above the configured limit. */
  | 'ahs-too-long'
  /** AHS entries do not fit TotalAHSLength, or an AHS has the wrong length for its type. */
  | 'bad-ahs'
  /** A field holds a value the PDU type does not allow (e.g. data on a PDU that carries none). */
  | 'bad-field'
  | 'header-digest'
  | 'data-digest'
  /** The decoder already failed fatally; the connection must be dropped. */
  | 'decoder-failed';

/** Details known about the offending PDU, for logging and for building a Reject. */
export interface ProtocolErrorInfo {
  /** The connection can no longer be trusted to be in sync: drop it (no Reject possible). */
  fatal: boolean;
  opcode?: number;
  itt?: number;
  /** The offending BHS (48 bytes), to be echoed in a Reject's data segment. */
  header?: Buffer;
  /** Suggested Reject reason when not fatal. */
  rejectReason?: number;
}

/**
 * A malformed or unacceptable PDU. `fatal` errors mean the byte stream can no longer be framed (or a header
 * digest failed, RFC 7143 §7.8): close the connection. Non-fatal ones consumed exactly the offending PDU,
 * so the decoder can go on; answer them with a Reject carrying `header`.
 */
export class ProtocolError extends Error implements ProtocolErrorInfo {
  readonly fatal: boolean;
  readonly opcode?: number;
  readonly itt?: number;
  readonly header?: Buffer;
  readonly rejectReason?: number;

  constructor(
    readonly reason: ProtocolErrorReason,
    message: string,
    info: ProtocolErrorInfo,
  ) {
    super(message);
    this.name = 'ProtocolError';
    this.fatal = info.fatal;
    if (info.opcode !== undefined) this.opcode = info.opcode;
    if (info.itt !== undefined) this.itt = info.itt;
    if (info.header !== undefined) this.header = info.header;
    if (info.rejectReason !== undefined) this.rejectReason = info.rejectReason;
  }
}

/** Header digest mismatch: always fatal, since the lengths that frame the stream are not trustworthy. */
export class HeaderDigestError extends ProtocolError {
  readonly kind = 'header' as const;
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super('header-digest', `header digest mismatch (expected ${hex(expected)}, got ${hex(actual)})`, {
      fatal: true,
    });
    this.name = 'HeaderDigestError';
  }
}

/**
 * Data digest mismatch: the header was good, so the PDU was consumed whole and the stream is still in sync.
 * Answer with Reject reason 0x02 carrying `header` (RFC 7143 §7.8); at ERL 0 the command is then failed.
 */
export class DataDigestError extends ProtocolError {
  readonly kind = 'data' as const;
  constructor(
    readonly expected: number,
    readonly actual: number,
    opcode: number,
    itt: number,
    header: Buffer,
  ) {
    super('data-digest', `data digest mismatch (expected ${hex(expected)}, got ${hex(actual)})`, {
      fatal: false,
      opcode,
      itt,
      header,
      rejectReason: RejectReason.DataDigestError,
    });
    this.name = 'DataDigestError';
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
