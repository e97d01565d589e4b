import { Asc, type AscPair, SenseKey, Status } from './constants.js';

/** Sense-key-specific field pointer: which CDB (or parameter list) byte and bit was wrong. */
export interface FieldPointer {
  /** True when the pointer is into the CDB, false for the parameter list. */
  cdb: boolean;
  byte: number;
  bit?: number;
}

export interface SenseOptions {
  /** Value of the INFORMATION field; sets VALID. */
  information?: number | bigint;
  fieldPointer?: FieldPointer;
}

/** Length of the fixed-format sense data this target returns. */
export const FIXED_SENSE_LENGTH = 18;

/** Builds fixed-format (0x70, current error) sense data. */
export function fixedSense(key: number, asc: AscPair, opts: SenseOptions = {}): Buffer {
  const b = Buffer.alloc(FIXED_SENSE_LENGTH);
  b[0] = 0x70;
  b[2] = key & 0x0f;
  if (opts.information !== undefined) {
    b[0] |= 0x80;
    // INFORMATION is four bytes in fixed format; larger values (LBAs past 2^32) are truncated as SPC allows.
    b.writeUInt32BE(Number(BigInt(opts.information) & 0xffffffffn), 3);
  }
  b[7] = FIXED_SENSE_LENGTH - 8;
  b[12] = asc[0];
  b[13] = asc[1];
  const fp = opts.fieldPointer;
  if (fp) {
    b[15] = 0x80 | (fp.cdb ? 0x40 : 0) | (fp.bit !== undefined ? 0x08 | (fp.bit & 7) : 0);
    b.writeUInt16BE(fp.byte, 16);
  }
  return b;
}

/**
 * A command failure carrying the status and sense to report. Handlers throw it; the dispatcher turns it
 * into the result, so a handler never has to unwind partial responses by hand.
 */
export class ScsiError extends Error {
  constructor(
    readonly status: number,
    readonly key: number,
    readonly asc: AscPair,
    readonly opts: SenseOptions = {},
  ) {
    super(
      `SCSI status 0x${status.toString(16)} key 0x${key.toString(16)} asc ${asc[0].toString(16)}/${asc[1].toString(16)}`,
    );
    this.name = 'ScsiError';
  }

  /** The fixed-format sense data (empty for statuses that carry none). */
  sense(): Buffer | undefined {
    return this.status === Status.CHECK_CONDITION ? fixedSense(this.key, this.asc, this.opts) : undefined;
  }
}

/** CHECK CONDITION with the given key and code. */
export function checkCondition(key: number, asc: AscPair, opts?: SenseOptions): ScsiError {
  return new ScsiError(Status.CHECK_CONDITION, key, asc, opts);
}

/** ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at `byte` (and `bit`). */
export function invalidField(byte: number, bit?: number): ScsiError {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB, {
    fieldPointer: { cdb: true, byte, ...(bit !== undefined ? { bit } : {}) },
  });
}

/** ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST pointing at parameter byte `byte`. */
export function invalidParameter(byte: number, bit?: number): ScsiError {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_PARAMETER_LIST, {
    fieldPointer: { cdb: false, byte, ...(bit !== undefined ? { bit } : {}) },
  });
}

/** ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR. */
export function parameterListLengthError(): ScsiError {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.PARAMETER_LIST_LENGTH_ERROR);
}

/** ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE. */
export function lbaOutOfRange(): ScsiError {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE);
}

/** ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE. */
export function invalidOpcode(): ScsiError {
  return checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_COMMAND_OPERATION_CODE, {
    fieldPointer: { cdb: true, byte: 0 },
  });
}

/** DATA PROTECT / WRITE PROTECTED (or SOFTWARE WRITE PROTECTED when the control page SWP bit did it). */
export function writeProtected(software = false): ScsiError {
  return checkCondition(SenseKey.DATA_PROTECT, software ? Asc.SOFTWARE_WRITE_PROTECTED : Asc.WRITE_PROTECTED);
}

/** MISCOMPARE / MISCOMPARE DURING VERIFY OPERATION with the offset of the first differing byte. */
export function miscompare(offset: number): ScsiError {
  return checkCondition(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY_OPERATION, { information: offset });
}

/** RESERVATION CONFLICT (no sense data). */
export function reservationConflict(): ScsiError {
  return new ScsiError(Status.RESERVATION_CONFLICT, SenseKey.NO_SENSE, Asc.NO_ADDITIONAL_SENSE);
}
