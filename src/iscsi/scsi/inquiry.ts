import type { LogicalUnit } from '../lu/logical-unit.js';
import { type CommandContext, dataIn, type LunlessContext, type Reply, reserved } from './command.js';
import { thirdPartyCopyPage } from './extended-copy.js';
import { blockLimits, MAX_COMPARE_AND_WRITE_BLOCKS, MAX_UNMAP_DESCRIPTORS } from './limits.js';
import { invalidField } from './sense.js';

/** Peripheral device type of a direct-access block device. */
const TYPE_DISK = 0x00;
/** PQ 001b + type 1Fh: "capable of a LU here but none is connected" (LUN masking, as LIO answers). */
const NOT_CONNECTED = 0x3f;

/** Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 (libiscsi keys its SBC-3 tests on 0x04C0). */
const VERSION_DESCRIPTORS = [0x00a0, 0x0960, 0x0460, 0x04c0];

const STANDARD_LENGTH = 96;

/** VPD pages this target serves, ascending as the Supported VPD Pages page must list them. */
const VPD_PAGES = [0x00, 0x80, 0x83, 0x8f, 0xb0, 0xb1, 0xb2] as const;

function ascii(buf: Buffer, offset: number, length: number, text: string): void {
  buf.fill(0x20, offset, offset + length);
  const clean = text.replace(/[^\x20-\x7e]/g, ' ').slice(0, length);
  buf.write(clean, offset, 'latin1');
}

/** Standard INQUIRY data of `lu` (or of an unmapped LUN when `lu` is undefined). */
export function standardInquiry(lu: LogicalUnit | undefined): Buffer {
  const b = Buffer.alloc(STANDARD_LENGTH);
  b[0] = lu ? TYPE_DISK : NOT_CONNECTED;
  b[2] = 0x06; // SPC-4
  b[3] = 0x12; // HISUP, response data format 2
  b[4] = STANDARD_LENGTH - 5;
  // TPGS 01b: implicit ALUA (one always active/optimized group, REPORT TARGET PORT GROUPS); 3PC: EXTENDED COPY.
  b[5] = lu ? 0x10 | 0x08 : 0x10;
  b[7] = 0x02; // CMDQUE
  ascii(b, 8, 8, lu?.vendor ?? 'TARGETD');
  ascii(b, 16, 16, lu?.product ?? 'no LU');
  ascii(b, 32, 4, lu?.revision ?? '0001');
  VERSION_DESCRIPTORS.forEach((v, i) => {
    b.writeUInt16BE(v, 58 + 2 * i);
  });
  return b;
}

function vpdPage(code: number, body: Buffer): Buffer {
  const b = Buffer.alloc(4 + body.length);
  b[0] = TYPE_DISK;
  b[1] = code;
  b.writeUInt16BE(body.length, 2);
  body.copy(b, 4);
  return b;
}

function designator(codeSet: number, piv: boolean, association: number, type: number, value: Buffer): Buffer {
  const b = Buffer.alloc(4 + value.length);
  // Protocol identifier 5 (iSCSI) is only meaningful, and only set, with PIV.
  b[0] = (piv ? 0x50 : 0) | codeSet;
  b[1] = (piv ? 0x80 : 0) | (association << 4) | type;
  b[3] = value.length;
  value.copy(b, 4);
  return b;
}

function padTo4(s: string): Buffer {
  const len = (Buffer.byteLength(s) + 1 + 3) & ~3; // NUL-terminated, multiple of four
  const b = Buffer.alloc(len);
  b.write(s, 0, 'utf8');
  return b;
}

function deviceIdentification(ctx: LunlessContext, lu: LogicalUnit): Buffer {
  const parts: Buffer[] = [];
  parts.push(designator(0x1, false, 0, 0x3, lu.naa));
  const t10 = Buffer.alloc(8 + Buffer.byteLength(lu.uuid));
  ascii(t10, 0, 8, lu.vendor);
  t10.write(lu.uuid, 8, 'latin1');
  parts.push(designator(0x2, false, 0, 0x1, t10));
  const rtp = Buffer.alloc(4);
  rtp.writeUInt16BE(ctx.services.relativeTargetPort, 2);
  parts.push(designator(0x1, true, 1, 0x4, rtp));
  const tpg = Buffer.alloc(4);
  tpg.writeUInt16BE(ctx.services.targetPortGroup, 2);
  parts.push(designator(0x1, true, 1, 0x5, tpg));
  const name = ctx.services.targetName;
  if (name) {
    const tpgt = ctx.services.targetPortGroup.toString(16).padStart(4, '0');
    parts.push(designator(0x3, true, 1, 0x8, padTo4(`${name},t,0x${tpgt}`)));
    parts.push(designator(0x3, true, 2, 0x8, padTo4(name)));
  }
  return vpdPage(0x83, Buffer.concat(parts));
}

function blockLimitsPage(lu: LogicalUnit): Buffer {
  const lim = blockLimits(lu);
  const b = Buffer.alloc(0x3c);
  b[1] = MAX_COMPARE_AND_WRITE_BLOCKS; // byte 5 of the page
  b.writeUInt16BE(lim.granularity, 2);
  b.writeUInt32BE(lim.maxTransfer, 4);
  b.writeUInt32BE(lim.optimalTransfer, 8);
  b.writeUInt32BE(lim.maxTransfer, 12); // maximum prefetch length
  if (lu.thin) {
    b.writeUInt32BE(lim.maxUnmap, 16);
    b.writeUInt32BE(MAX_UNMAP_DESCRIPTORS, 20);
    b.writeUInt32BE(lim.granularity, 24);
    b.writeUInt32BE(0x80000000, 28); // UGAVALID, alignment 0
  }
  b.writeBigUInt64BE(BigInt(lim.maxWriteSame), 32);
  // Atomic-write fields stay zero: a file cannot promise an untorn multi-block write across power loss.
  return vpdPage(0xb0, b);
}

function blockDeviceCharacteristics(): Buffer {
  const b = Buffer.alloc(0x3c);
  b.writeUInt16BE(0x0001, 0); // non-rotating medium
  return vpdPage(0xb1, b);
}

function logicalBlockProvisioning(lu: LogicalUnit): Buffer {
  const b = Buffer.alloc(4);
  if (lu.thin) {
    b[1] = 0x80 | 0x40 | 0x20 | 0x04; // LBPU, LBPWS, LBPWS10, LBPRZ=001b (holes read as zeros)
    b[2] = 0x02; // provisioning type: thin
  }
  return vpdPage(0xb2, b);
}

/** INQUIRY for a mapped LU: standard data or one VPD page, cut to the allocation length. */
export function inquiry(ctx: CommandContext): Reply {
  return inquiryCommon(ctx, ctx.lu);
}

/** INQUIRY on a LUN with no LU: "not connected" standard data; no VPD pages. */
export function inquiryLunless(ctx: LunlessContext): Reply {
  return inquiryCommon(ctx, undefined);
}

function inquiryCommon(ctx: LunlessContext, lu: LogicalUnit | undefined): Reply {
  const { cdb } = ctx;
  reserved(cdb, 1, 0xfe); // CMDDT (obsolete) and reserved bits
  const evpd = (cdb[1]! & 0x01) !== 0;
  const page = cdb[2]!;
  const alloc = cdb.readUInt16BE(3);
  if (!evpd) {
    if (page !== 0) throw invalidField(2);
    return dataIn(standardInquiry(lu), alloc);
  }
  if (!lu) {
    // Only the list of pages is meaningful without a LU; give a header that says "nothing here".
    if (page !== 0) throw invalidField(2);
    const b = vpdPage(0x00, Buffer.from([0x00]));
    b[0] = NOT_CONNECTED;
    return dataIn(b, alloc);
  }
  let out: Buffer;
  switch (page) {
    case 0x00:
      out = vpdPage(0x00, Buffer.from(VPD_PAGES));
      break;
    case 0x80:
      out = vpdPage(0x80, Buffer.from(lu.uuid, 'latin1'));
      break;
    case 0x83:
      out = deviceIdentification(ctx, lu);
      break;
    case 0x8f:
      out = vpdPage(0x8f, thirdPartyCopyPage(lu));
      break;
    case 0xb0:
      out = blockLimitsPage(lu);
      break;
    case 0xb1:
      out = blockDeviceCharacteristics();
      break;
    case 0xb2:
      out = logicalBlockProvisioning(lu);
      break;
    default:
      throw invalidField(2);
  }
  return dataIn(out, alloc);
}
