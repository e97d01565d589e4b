import type { LogicalUnit } from '../lu/logical-unit.js';
import {
  type CommandContext,
  type CommandSpec,
  dataIn,
  type LunlessContext,
  NO_DATA,
  type Reply,
  reserved,
} from './command.js';
import { Op, ServiceAction } from './constants.js';
import { extendedCopy, receiveCopyResults } from './extended-copy.js';
import { inquiry, inquiryLunless } from './inquiry.js';
import { modeSelect, modeSense } from './mode.js';
import { getLbaStatus, unmap, writeSame } from './provisioning.js';
import { persistentReserveIn, persistentReserveOut, release, reserve } from './reservations.js';
import {
  compareAndWrite,
  orWrite,
  preFetch,
  preventAllow,
  read,
  readCapacity10,
  readCapacity16,
  readDefectData,
  startStopUnit,
  synchronizeCache,
  verify,
  write,
  writeAndVerify,
} from './sbc.js';
import { invalidField } from './sense.js';

const ff4 = [0xff, 0xff, 0xff, 0xff] as const;
const ff8 = [...ff4, ...ff4] as const;
/** GROUP NUMBER bits (accepted and ignored). */
const GROUP = 0x1f;

const isThin = (lu: LogicalUnit) => lu.thin;

function testUnitReady(): Reply {
  return NO_DATA;
}

/** REPORT LUNS: the LUNs this initiator may see (LUN masking), single-level LUN format. */
function reportLuns(ctx: LunlessContext): Reply {
  const { cdb } = ctx;
  const select = cdb[2]!;
  const alloc = cdb.readUInt32BE(6);
  if (alloc < 16) throw invalidField(6);
  let luns: number[];
  switch (select) {
    case 0x00:
    case 0x02:
      luns = ctx.services.lunsOf(ctx.nexusKey);
      break;
    case 0x01: // well-known LUs only: we have none
      luns = [];
      break;
    case 0x10:
    case 0x11:
      // Administrative / subsidiary LUs (SPC-5) are only defined relative to LUN 0 conglomerates.
      luns = [];
      break;
    case 0x12:
      luns = ctx.lun === 0 ? ctx.services.lunsOf(ctx.nexusKey) : [];
      break;
    default:
      throw invalidField(2);
  }
  const b = Buffer.alloc(8 + 8 * luns.length);
  b.writeUInt32BE(8 * luns.length, 0);
  luns.forEach((lun, i) => {
    const off = 8 + 8 * i;
    if (lun < 256) {
      b[off + 1] = lun; // peripheral device addressing
    } else {
      b[off] = 0x40 | ((lun >> 8) & 0x3f); // flat space addressing
      b[off + 1] = lun & 0xff;
    }
  });
  return dataIn(b, alloc);
}

/** REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS. */
function reportSupportedTmf(ctx: CommandContext): Reply {
  const { cdb } = ctx;
  const repd = (cdb[2]! & 0x80) !== 0;
  const alloc = cdb.readUInt32BE(6);
  const b = Buffer.alloc(repd ? 16 : 4);
  b[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02; // ATS, ATSS, CTSS, LURS, TRS
  if (repd) b[3] = 0x0c;
  return dataIn(b, alloc);
}

/** REPORT TARGET PORT GROUPS: one group, always active/optimized, with our one port. */
function reportTargetPortGroups(ctx: CommandContext): Reply {
  const { cdb, services } = ctx;
  const extended = cdb[1]! >> 5 === 1;
  const alloc = cdb.readUInt32BE(6);
  const desc = Buffer.alloc(12);
  desc[0] = 0x80; // PREF, asymmetric access state 0: active/optimized
  desc[1] = 0x01; // AO_SUP
  desc.writeUInt16BE(services.targetPortGroup, 2);
  desc[7] = 1; // one target port
  desc.writeUInt16BE(services.relativeTargetPort, 10);
  const header = Buffer.alloc(extended ? 8 : 4);
  header.writeUInt32BE(header.length - 4 + desc.length, 0);
  if (extended) header[4] = 0x10; // format type 1: extended header, implicit transition time 0
  return dataIn(Buffer.concat([header, desc]), alloc);
}

/** Every command this target implements. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'TEST UNIT READY',
    opcode: Op.TEST_UNIT_READY,
    cdbLength: 6,
    usage: [0x00, 0, 0, 0, 0, 0],
    pr: 'allowed',
    handler: testUnitReady,
  },
  {
    name: 'REQUEST SENSE',
    opcode: Op.REQUEST_SENSE,
    cdbLength: 6,
    usage: [0x03, 0x01, 0, 0, 0xff, 0],
    pr: 'allowed',
    scsi2Allowed: true,
    noUnitAttention: true,
    // Answered by the target itself, which owns the unit attention queues.
    handler: () => NO_DATA,
  },
  {
    name: 'READ(6)',
    opcode: Op.READ_6,
    cdbLength: 6,
    usage: [0x08, 0x1f, 0xff, 0xff, 0xff, 0],
    pr: 'read',
    handler: read,
  },
  {
    name: 'WRITE(6)',
    opcode: Op.WRITE_6,
    cdbLength: 6,
    usage: [0x0a, 0x1f, 0xff, 0xff, 0xff, 0],
    pr: 'write',
    handler: write,
  },
  {
    name: 'INQUIRY',
    opcode: Op.INQUIRY,
    cdbLength: 6,
    usage: [0x12, 0x01, 0xff, 0xff, 0xff, 0],
    pr: 'allowed',
    scsi2Allowed: true,
    noUnitAttention: true,
    handler: inquiry,
    lunless: inquiryLunless,
  },
  {
    name: 'MODE SELECT(6)',
    opcode: Op.MODE_SELECT_6,
    cdbLength: 6,
    usage: [0x15, 0x11, 0, 0, 0xff, 0],
    pr: 'write',
    handler: modeSelect,
  },
  {
    name: 'RESERVE(6)',
    opcode: Op.RESERVE_6,
    cdbLength: 6,
    usage: [0x16, 0, 0, 0, 0, 0],
    pr: 'write',
    // Conflicts are decided by the handler (a holder may reserve again).
    scsi2Allowed: true,
    handler: reserve,
  },
  {
    name: 'RELEASE(6)',
    opcode: Op.RELEASE_6,
    cdbLength: 6,
    usage: [0x17, 0, 0, 0, 0, 0],
    pr: 'write',
    scsi2Allowed: true,
    handler: release,
  },
  {
    name: 'MODE SENSE(6)',
    opcode: Op.MODE_SENSE_6,
    cdbLength: 6,
    usage: [0x1a, 0x08, 0xff, 0xff, 0xff, 0],
    pr: 'read',
    handler: modeSense,
  },
  {
    name: 'START STOP UNIT',
    opcode: Op.START_STOP_UNIT,
    cdbLength: 6,
    usage: [0x1b, 0x01, 0, 0x0f, 0xf7, 0],
    pr: 'write',
    handler: startStopUnit,
  },
  {
    name: 'PREVENT ALLOW MEDIUM REMOVAL',
    opcode: Op.PREVENT_ALLOW_MEDIUM_REMOVAL,
    cdbLength: 6,
    usage: [0x1e, 0, 0, 0, 0x03, 0],
    pr: 'write',
    handler: preventAllow,
  },
  {
    name: 'READ CAPACITY(10)',
    opcode: Op.READ_CAPACITY_10,
    cdbLength: 10,
    usage: [0x25, 0, ...ff4, 0, 0, 0x01, 0],
    pr: 'allowed',
    handler: readCapacity10,
  },
  {
    name: 'READ(10)',
    opcode: Op.READ_10,
    cdbLength: 10,
    usage: [0x28, 0xf8, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'read',
    handler: read,
  },
  {
    name: 'WRITE(10)',
    opcode: Op.WRITE_10,
    cdbLength: 10,
    usage: [0x2a, 0xf8, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'write',
    handler: write,
  },
  {
    name: 'WRITE AND VERIFY(10)',
    opcode: Op.WRITE_AND_VERIFY_10,
    cdbLength: 10,
    usage: [0x2e, 0xf6, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'write',
    handler: writeAndVerify,
  },
  {
    name: 'VERIFY(10)',
    opcode: Op.VERIFY_10,
    cdbLength: 10,
    usage: [0x2f, 0xf6, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'read',
    handler: verify,
  },
  {
    name: 'PRE-FETCH(10)',
    opcode: Op.PRE_FETCH_10,
    cdbLength: 10,
    usage: [0x34, 0x02, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'read',
    handler: preFetch,
  },
  {
    name: 'SYNCHRONIZE CACHE(10)',
    opcode: Op.SYNCHRONIZE_CACHE_10,
    cdbLength: 10,
    usage: [0x35, 0x02, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'write',
    handler: synchronizeCache,
  },
  {
    name: 'READ DEFECT DATA(10)',
    opcode: Op.READ_DEFECT_DATA_10,
    cdbLength: 10,
    usage: [0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0],
    pr: 'read',
    handler: readDefectData,
  },
  {
    name: 'WRITE SAME(10)',
    opcode: Op.WRITE_SAME_10,
    cdbLength: 10,
    usage: [0x41, 0xe8, ...ff4, GROUP, 0xff, 0xff, 0],
    pr: 'write',
    handler: writeSame,
  },
  {
    name: 'UNMAP',
    opcode: Op.UNMAP,
    cdbLength: 10,
    usage: [0x42, 0, 0, 0, 0, 0, GROUP, 0xff, 0xff, 0],
    pr: 'write',
    available: isThin,
    handler: unmap,
  },
  {
    name: 'MODE SELECT(10)',
    opcode: Op.MODE_SELECT_10,
    cdbLength: 10,
    usage: [0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
    pr: 'write',
    handler: modeSelect,
  },
  {
    name: 'RESERVE(10)',
    opcode: Op.RESERVE_10,
    cdbLength: 10,
    usage: [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    pr: 'write',
    scsi2Allowed: true,
    handler: reserve,
  },
  {
    name: 'RELEASE(10)',
    opcode: Op.RELEASE_10,
    cdbLength: 10,
    usage: [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    pr: 'write',
    scsi2Allowed: true,
    handler: release,
  },
  {
    name: 'MODE SENSE(10)',
    opcode: Op.MODE_SENSE_10,
    cdbLength: 10,
    usage: [0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0],
    pr: 'read',
    handler: modeSense,
  },
  ...[0, 1, 2, 3].map(
    (sa): CommandSpec => ({
      name: 'PERSISTENT RESERVE IN',
      opcode: Op.PERSISTENT_RESERVE_IN,
      serviceAction: sa,
      cdbLength: 10,
      usage: [0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0],
      pr: 'allowed',
      handler: persistentReserveIn,
    }),
  ),
  ...[0, 1, 2, 3, 4, 5, 6].map(
    (sa): CommandSpec => ({
      name: 'PERSISTENT RESERVE OUT',
      opcode: Op.PERSISTENT_RESERVE_OUT,
      serviceAction: sa,
      cdbLength: 10,
      usage: [0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0],
      pr: 'allowed',
      scsi2Allowed: true,
      handler: persistentReserveOut,
    }),
  ),
  {
    name: 'EXTENDED COPY(LID1)',
    opcode: Op.EXTENDED_COPY,
    serviceAction: ServiceAction.EXTENDED_COPY_LID1,
    cdbLength: 16,
    usage: [0x83, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, ...ff4, 0, 0],
    pr: 'write',
    handler: extendedCopy,
  },
  ...[ServiceAction.COPY_STATUS, ServiceAction.COPY_OPERATING_PARAMETERS].map(
    (sa): CommandSpec => ({
      name: 'RECEIVE COPY RESULTS',
      opcode: Op.RECEIVE_COPY_RESULTS,
      serviceAction: sa,
      cdbLength: 16,
      usage: [0x84, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, ...ff4, 0, 0],
      pr: 'read',
      handler: receiveCopyResults,
    }),
  ),
  {
    name: 'READ(16)',
    opcode: Op.READ_16,
    cdbLength: 16,
    usage: [0x88, 0xf8, ...ff8, ...ff4, GROUP, 0],
    pr: 'read',
    handler: read,
  },
  {
    name: 'COMPARE AND WRITE',
    opcode: Op.COMPARE_AND_WRITE,
    cdbLength: 16,
    usage: [0x89, 0xf8, ...ff8, 0, 0, 0, 0xff, GROUP, 0],
    pr: 'write',
    handler: compareAndWrite,
  },
  {
    name: 'WRITE(16)',
    opcode: Op.WRITE_16,
    cdbLength: 16,
    usage: [0x8a, 0xf8, ...ff8, ...ff4, GROUP, 0],
    pr: 'write',
    handler: write,
  },
  {
    name: 'ORWRITE(16)',
    opcode: Op.ORWRITE_16,
    cdbLength: 16,
    usage: [0x8b, 0xf8, ...ff8, ...ff4, GROUP, 0],
    pr: 'write',
    handler: orWrite,
  },
  {
    name: 'WRITE AND VERIFY(16)',
    opcode: Op.WRITE_AND_VERIFY_16,
    cdbLength: 16,
    usage: [0x8e, 0xf6, ...ff8, ...ff4, GROUP, 0],
    pr: 'write',
    handler: writeAndVerify,
  },
  {
    name: 'VERIFY(16)',
    opcode: Op.VERIFY_16,
    cdbLength: 16,
    usage: [0x8f, 0xf6, ...ff8, ...ff4, GROUP, 0],
    pr: 'read',
    handler: verify,
  },
  {
    name: 'PRE-FETCH(16)',
    opcode: Op.PRE_FETCH_16,
    cdbLength: 16,
    usage: [0x90, 0x02, ...ff8, ...ff4, GROUP, 0],
    pr: 'read',
    handler: preFetch,
  },
  {
    name: 'SYNCHRONIZE CACHE(16)',
    opcode: Op.SYNCHRONIZE_CACHE_16,
    cdbLength: 16,
    usage: [0x91, 0x02, ...ff8, ...ff4, GROUP, 0],
    pr: 'write',
    handler: synchronizeCache,
  },
  {
    name: 'WRITE SAME(16)',
    opcode: Op.WRITE_SAME_16,
    cdbLength: 16,
    usage: [0x93, 0xe9, ...ff8, ...ff4, GROUP, 0],
    pr: 'write',
    handler: writeSame,
  },
  {
    name: 'READ CAPACITY(16)',
    opcode: Op.SERVICE_ACTION_IN_16,
    serviceAction: ServiceAction.READ_CAPACITY_16,
    cdbLength: 16,
    usage: [0x9e, 0x1f, ...ff8, ...ff4, 0, 0],
    pr: 'allowed',
    handler: readCapacity16,
  },
  {
    name: 'GET LBA STATUS',
    opcode: Op.SERVICE_ACTION_IN_16,
    serviceAction: ServiceAction.GET_LBA_STATUS,
    cdbLength: 16,
    usage: [0x9e, 0x1f, ...ff8, ...ff4, 0, 0],
    pr: 'read',
    available: isThin,
    handler: getLbaStatus,
  },
  {
    name: 'REPORT LUNS',
    opcode: Op.REPORT_LUNS,
    cdbLength: 12,
    usage: [0xa0, 0, 0xff, 0, 0, 0, ...ff4, 0, 0],
    pr: 'allowed',
    scsi2Allowed: true,
    noUnitAttention: true,
    handler: reportLuns,
    lunless: reportLuns,
  },
  {
    name: 'REPORT TARGET PORT GROUPS',
    opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_TARGET_PORT_GROUPS,
    cdbLength: 12,
    usage: [0xa3, 0xff, 0, 0, 0, 0, ...ff4, 0, 0],
    pr: 'allowed',
    handler: reportTargetPortGroups,
  },
  {
    name: 'REPORT SUPPORTED OPERATION CODES',
    opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_SUPPORTED_OPERATION_CODES,
    cdbLength: 12,
    usage: [0xa3, 0x1f, 0x87, 0xff, 0xff, 0xff, ...ff4, 0, 0],
    pr: 'allowed',
    handler: reportSupportedOperationCodes,
  },
  {
    name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS',
    opcode: Op.MAINTENANCE_IN,
    serviceAction: ServiceAction.REPORT_SUPPORTED_TASK_MANAGEMENT_FUNCTIONS,
    cdbLength: 12,
    usage: [0xa3, 0x1f, 0x80, 0, 0, 0, ...ff4, 0, 0],
    pr: 'allowed',
    handler: reportSupportedTmf,
  },
  {
    name: 'READ(12)',
    opcode: Op.READ_12,
    cdbLength: 12,
    usage: [0xa8, 0xf8, ...ff4, ...ff4, GROUP, 0],
    pr: 'read',
    handler: read,
  },
  {
    name: 'WRITE(12)',
    opcode: Op.WRITE_12,
    cdbLength: 12,
    usage: [0xaa, 0xf8, ...ff4, ...ff4, GROUP, 0],
    pr: 'write',
    handler: write,
  },
  {
    name: 'WRITE AND VERIFY(12)',
    opcode: Op.WRITE_AND_VERIFY_12,
    cdbLength: 12,
    usage: [0xae, 0xf6, ...ff4, ...ff4, GROUP, 0],
    pr: 'write',
    handler: writeAndVerify,
  },
  {
    name: 'VERIFY(12)',
    opcode: Op.VERIFY_12,
    cdbLength: 12,
    usage: [0xaf, 0xf6, ...ff4, ...ff4, GROUP, 0],
    pr: 'read',
    handler: verify,
  },
  {
    name: 'READ DEFECT DATA(12)',
    opcode: Op.READ_DEFECT_DATA_12,
    cdbLength: 12,
    usage: [0xb7, 0x1f, 0, 0, 0, 0, ...ff4, 0, 0],
    pr: 'read',
    handler: readDefectData,
  },
];

/** Opcodes whose byte 1 carries a service action. */
const HAS_SERVICE_ACTION = new Set(
  COMMANDS.filter((c) => c.serviceAction !== undefined).map((c) => c.opcode),
);

const BY_KEY = new Map<number, CommandSpec>(
  COMMANDS.map((c) => [(c.opcode << 8) | (c.serviceAction ?? 0), c]),
);

/** Why a CDB matched no command: the opcode, or only its service action, is unknown. */
export type LookupMiss = 'opcode' | 'service-action';

/** The command a CDB asks for on `lu` (or on no LU), or why there is none. */
export function lookup(cdb: Buffer, lu: LogicalUnit | undefined): CommandSpec | LookupMiss {
  const opcode = cdb[0]!;
  const hasSa = HAS_SERVICE_ACTION.has(opcode);
  const sa = hasSa ? cdb[1]! & 0x1f : 0;
  const spec = BY_KEY.get((opcode << 8) | sa);
  if (!spec || (lu && spec.available && !spec.available(lu))) {
    if (hasSa && COMMANDS.some((c) => c.opcode === opcode && (!lu || !c.available || c.available(lu)))) {
      return 'service-action';
    }
    return 'opcode';
  }
  return spec;
}

/** Whether `opcode` takes a service action. */
export function hasServiceAction(opcode: number): boolean {
  return HAS_SERVICE_ACTION.has(opcode);
}

/** Command timeouts descriptor (RCTD): no nominal or recommended timeout is reported. */
function timeoutsDescriptor(): Buffer {
  const t = Buffer.alloc(12);
  t.writeUInt16BE(0x0a, 0);
  return t;
}

/** REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN 0x0C), reporting options 0 to 3. */
function reportSupportedOperationCodes(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  const rctd = (cdb[2]! & 0x80) !== 0;
  const options = cdb[2]! & 0x07;
  const opcode = cdb[3]!;
  const sa = cdb.readUInt16BE(4);
  const alloc = cdb.readUInt32BE(6);
  reserved(cdb, 2, 0x78);
  const supported = COMMANDS.filter((c) => !c.available || c.available(lu));
  if (options === 0) {
    const parts = supported.map((c) => {
      const d = Buffer.alloc(rctd ? 20 : 8);
      d[0] = c.opcode;
      d.writeUInt16BE(c.serviceAction ?? 0, 2);
      d[5] = (rctd ? 0x02 : 0) | (c.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
      d.writeUInt16BE(c.cdbLength, 6);
      if (rctd) timeoutsDescriptor().copy(d, 8);
      return d;
    });
    const body = Buffer.concat(parts);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length, 0);
    return dataIn(Buffer.concat([header, body]), alloc);
  }
  let spec: CommandSpec | undefined;
  const withSa = hasServiceAction(opcode);
  switch (options) {
    case 1:
      if (withSa) throw invalidField(3);
      if (sa !== 0) throw invalidField(4);
      spec = supported.find((c) => c.opcode === opcode);
      break;
    case 2:
      if (!withSa) throw invalidField(3);
      spec = supported.find((c) => c.opcode === opcode && c.serviceAction === sa);
      break;
    case 3:
      spec = supported.find((c) => c.opcode === opcode && (c.serviceAction ?? 0) === (withSa ? sa : 0));
      if (!withSa && sa !== 0) spec = undefined;
      break;
    default:
      throw invalidField(2, 2);
  }
  if (!spec) {
    const b = Buffer.alloc(4);
    b[1] = 0x01; // SUPPORT 001b: not supported
    return dataIn(b, alloc);
  }
  const usage = Buffer.from(spec.usage);
  const b = Buffer.alloc(4 + usage.length + (rctd ? 12 : 0));
  b[1] = (rctd ? 0x80 : 0) | 0x03; // CTDP, SUPPORT 011b: supported as the standard says
  b.writeUInt16BE(usage.length, 2);
  usage.copy(b, 4);
  if (rctd) timeoutsDescriptor().copy(b, 4 + usage.length);
  return dataIn(b, alloc);
}
