import type { BackingStore } from './backing-store.js';
import { PersistentReservations, type PrStore } from './persistent-reservations.js';
import { RangeLock } from './range-lock.js';

export interface LogicalUnitOptions {
  backing: BackingStore;
  /** Volume UUID: the unit serial number (VPD 0x80) and the source of the NAA designator (VPD 0x83). */
  uuid: string;
  blockSize?: number;
  /**
   * Physical block size reported by READ CAPACITY(16) (logical blocks per physical block exponent); the
   * logical block size by default. Block Limits always asks for 4 KiB-aligned I/O (the file system's block)
   * through its granularity fields, which is what initiators use for alignment anyway.
   */
  physicalBlockSize?: number;
  /** T10 vendor identification, up to 8 ASCII characters. */
  vendor?: string;
  /** Product identification, up to 16 ASCII characters. */
  product?: string;
  /** Product revision level, up to 4 ASCII characters. */
  revision?: string;
  readOnly?: boolean;
  /** Keeps persistent reservations across restarts when an initiator asks for APTPL. */
  prStore?: PrStore;
  /** IEEE company id of the NAA designator; LIO's 0x001405 by default so ids match a LIO-exported volume. */
  companyId?: number;
}

/** SPC/SBC state of one logical unit over a backing store: identity, reservations, mode pages, locks. */
export class LogicalUnit {
  readonly backing: BackingStore;
  readonly uuid: string;
  readonly blockSize: number;
  readonly physicalBlockSize: number;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly readOnly: boolean;
  readonly naa: Buffer;
  readonly pr: PersistentReservations;
  /** Serializes overlapping writes so read-modify-write commands are atomic. */
  readonly locks = new RangeLock();
  /** Holder of a SCSI-2 RESERVE(6)/(10) reservation (an I_T nexus key), if any. */
  scsi2Holder: string | null = null;
  /** Caching mode page WCE bit; when clear every write is made durable before GOOD. */
  writeCacheEnabled = true;
  /** Control mode page SWP bit: software write protect set by MODE SELECT. */
  softwareWriteProtect = false;
  private currentFlush: Promise<void> | null = null;
  private nextFlush: Promise<void> | null = null;

  constructor(opts: LogicalUnitOptions) {
    const blockSize = opts.blockSize ?? 512;
    if (
      !Number.isInteger(blockSize) ||
      blockSize < 512 ||
      blockSize > 65536 ||
      (blockSize & (blockSize - 1)) !== 0
    ) {
      throw new RangeError(`block size must be a power of two from 512 to 65536, got ${blockSize}`);
    }
    this.backing = opts.backing;
    this.uuid = opts.uuid;
    this.blockSize = blockSize;
    const physical = opts.physicalBlockSize ?? blockSize;
    if (
      physical < blockSize ||
      physical % blockSize !== 0 ||
      ((physical / blockSize) & (physical / blockSize - 1)) !== 0
    ) {
      throw new RangeError(`physical block size ${physical} is not a power-of-two multiple of ${blockSize}`);
    }
    this.physicalBlockSize = physical;
    this.vendor = opts.vendor ?? 'TARGETD';
    this.product = opts.product ?? 'targetd volume';
    this.revision = opts.revision ?? '0001';
    this.readOnly = opts.readOnly ?? false;
    this.naa = naaRegisteredExtended(opts.uuid, opts.companyId ?? 0x001405);
    this.pr = new PersistentReservations(opts.prStore);
  }

  /** Number of whole logical blocks. */
  get capacity(): number {
    return Math.floor(this.backing.size() / this.blockSize);
  }

  /** Whether the LU is thin-provisioned: it can deallocate blocks (LBPME). */
  get thin(): boolean {
    return !this.readOnly && typeof this.backing.punchHole === 'function';
  }

  /**
   * Makes every write completed before the call durable. Callers arriving while an fdatasync runs share
   * the one that starts after it (group commit), so a burst of FUA writes costs two syncs, not one each.
   */
  flush(): Promise<void> {
    if (this.nextFlush) return this.nextFlush;
    if (this.currentFlush) {
      this.nextFlush = this.currentFlush
        .catch(() => undefined)
        .then(() => {
          this.nextFlush = null;
          return this.startFlush();
        });
      return this.nextFlush;
    }
    return this.startFlush();
  }

  /** Flushes and closes the backing store; the LU must not be used afterwards. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.backing.close();
    }
  }

  private startFlush(): Promise<void> {
    const p = this.backing.flush().finally(() => {
      if (this.currentFlush === p) this.currentFlush = null;
    });
    this.currentFlush = p;
    return p;
  }

  /** Whether writes are refused (read-only mapping or software write protect). */
  get writeProtected(): boolean {
    return this.readOnly || this.softwareWriteProtect;
  }
}

/**
 * The 16-byte NAA IEEE Registered Extended designator the way LIO builds it: NAA 6, the 24-bit company id,
 * then the first 25 hexadecimal digits of the unit serial (non-hex characters such as dashes skipped),
 * zero-padded. libStorageMgmt predicts a volume's VPD 0x83 id from its UUID the same way.
 */
export function naaRegisteredExtended(serial: string, companyId = 0x001405): Buffer {
  const buf = Buffer.alloc(16);
  buf[0] = 0x60 | ((companyId >> 20) & 0x0f);
  buf[1] = (companyId >> 12) & 0xff;
  buf[2] = (companyId >> 4) & 0xff;
  buf[3] = (companyId & 0x0f) << 4;
  // Nibble index 7 is the low half of byte 3; 25 digits fill it and bytes 4..15.
  let nibble = 7;
  for (const ch of serial) {
    if (nibble >= 32) break;
    const v = Number.parseInt(ch, 16);
    if (Number.isNaN(v)) continue;
    const byte = nibble >> 1;
    buf[byte] = (nibble & 1) === 1 ? buf[byte]! | v : v << 4;
    nibble++;
  }
  return buf;
}
