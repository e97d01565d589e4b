/**
 * An I_T nexus as the SCSI layer sees it: the initiator port (iSCSI name plus ISID). Two sessions with the
 * same name and ISID are the same initiator port, so persistent-reservation registrations carry over a
 * reconnect; the session layer must pass the same identity for a reinstated session.
 */
export interface ItNexus {
  /** iSCSI initiator name (case-insensitive; compared lower-cased). */
  initiator: string;
  /** ISID, 6 bytes as 12 hex digits (or a number below 2^48). */
  isid: string | number | bigint;
}

/** A SCSI command's outcome, handed back to the transport. */
export interface ScsiResult {
  /** SAM status (0x00 GOOD, 0x02 CHECK CONDITION, 0x18 RESERVATION CONFLICT, 0x08 BUSY, 0x28 TASK SET FULL). */
  status: number;
  /** Fixed-format sense data (0x70), present with CHECK CONDITION. */
  sense?: Buffer;
  /**
   * Data-In, in order, already cut to the expected transfer length; several pieces (or subarrays of one
   * buffer) so big reads need no copy. Empty for commands without Data-In.
   */
  data: Buffer[];
  /** Total bytes in `data`. */
  dataLength: number;
  /**
   * Bytes the command itself would transfer in its direction (Data-In after the allocation length, or the
   * Data-Out its CDB asks for). Residual = expected length − transferLength: positive is an underflow,
   * negative an overflow of that many bytes. 0 for a command that failed before moving data.
   */
  transferLength: number;
  /** Set when a task management function aborted the command: the transport sends no response for it. */
  aborted?: boolean;
}

export interface ExecuteOptions {
  /** Initiator task tag, so ABORT TASK can find the command. */
  taskTag?: number;
}
