import { isAllRegistrants, isValidPrType, PrType } from '../lu/persistent-reservations.js';
import { type CommandContext, dataIn, NO_DATA, type Reply, reserved } from './command.js';
import { Asc, SenseKey } from './constants.js';
import {
  checkCondition,
  invalidField,
  invalidParameter,
  parameterListLengthError,
  reservationConflict,
} from './sense.js';

const PRIN_READ_KEYS = 0;
const PRIN_READ_RESERVATION = 1;
const PRIN_REPORT_CAPABILITIES = 2;
const PRIN_READ_FULL_STATUS = 3;

const PROUT_REGISTER = 0;
const PROUT_RESERVE = 1;
const PROUT_RELEASE = 2;
const PROUT_CLEAR = 3;
const PROUT_PREEMPT_AND_ABORT = 5;
const PROUT_REGISTER_AND_IGNORE = 6;

/** The iSCSI TransportID (format 01b, initiator port with ISID) of an initiator-port key. */
export function transportId(nexusKey: string): Buffer {
  const len = (Buffer.byteLength(nexusKey) + 1 + 3) & ~3;
  const b = Buffer.alloc(4 + len);
  b[0] = 0x40 | 0x05;
  b.writeUInt16BE(len, 2);
  b.write(nexusKey, 4, 'utf8');
  return b;
}

/** PERSISTENT RESERVE IN. */
export function persistentReserveIn(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  const sa = cdb[1]! & 0x1f;
  const alloc = cdb.readUInt16BE(7);
  const pr = lu.pr;
  switch (sa) {
    case PRIN_READ_KEYS: {
      const b = Buffer.alloc(8 + 8 * pr.registrations.size);
      b.writeUInt32BE(pr.generation, 0);
      b.writeUInt32BE(8 * pr.registrations.size, 4);
      let off = 8;
      for (const key of pr.registrations.values()) {
        b.writeBigUInt64BE(key, off);
        off += 8;
      }
      return dataIn(b, alloc);
    }
    case PRIN_READ_RESERVATION: {
      const r = pr.reservation;
      const b = Buffer.alloc(r ? 24 : 8);
      b.writeUInt32BE(pr.generation, 0);
      if (r) {
        b.writeUInt32BE(16, 4);
        // All-registrants reservations have no single holder: the key reads as zero.
        const key = isAllRegistrants(r.type) ? 0n : (pr.registrations.get(r.holder) ?? 0n);
        b.writeBigUInt64BE(key, 8);
        b[21] = r.type & 0x0f; // scope 0 (LU)
      }
      return dataIn(b, alloc);
    }
    case PRIN_REPORT_CAPABILITIES: {
      const b = Buffer.alloc(8);
      b.writeUInt16BE(8, 0);
      b[2] = 0x10 | 0x04 | (pr.canPersist ? 0x01 : 0); // CRH, ATP_C (one target port), PTPL_C
      b[3] = 0x80 | (pr.aptpl ? 0x01 : 0); // TMV, PTPL_A
      b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02; // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX
      b[5] = 0x01; // EX_AC_AR
      return dataIn(b, alloc);
    }
    case PRIN_READ_FULL_STATUS: {
      const parts: Buffer[] = [];
      for (const [nexus, key] of pr.registrations) {
        const tid = transportId(nexus);
        const d = Buffer.alloc(24 + tid.length);
        d.writeBigUInt64BE(key, 0);
        d[12] = 0x02 | (pr.isHolder(nexus) ? 0x01 : 0); // ALL_TG_PT (single port), R_HOLDER
        if (pr.isHolder(nexus)) d[13] = pr.reservation!.type & 0x0f;
        d.writeUInt16BE(ctx.services.relativeTargetPort, 18);
        d.writeUInt32BE(tid.length, 20);
        tid.copy(d, 24);
        parts.push(d);
      }
      const body = Buffer.concat(parts);
      const b = Buffer.alloc(8 + body.length);
      b.writeUInt32BE(pr.generation, 0);
      b.writeUInt32BE(body.length, 4);
      body.copy(b, 8);
      return dataIn(b, alloc);
    }
    default:
      throw invalidField(1, 4);
  }
}

/** PERSISTENT RESERVE OUT (all service actions but REGISTER AND MOVE). */
export async function persistentReserveOut(ctx: CommandContext): Promise<Reply> {
  const { cdb, lu, nexusKey } = ctx;
  const pr = lu.pr;
  const sa = cdb[1]! & 0x1f;
  const scope = cdb[2]! >> 4;
  const type = cdb[2]! & 0x0f;
  const listLength = cdb.readUInt32BE(5);
  if (sa > PROUT_REGISTER_AND_IGNORE) throw invalidField(1, 4);
  if (listLength !== 24) throw parameterListLengthError();
  if (ctx.dataOut.length < 24) throw parameterListLengthError();
  const p = ctx.dataOut;
  const key = p.readBigUInt64BE(0);
  const saKey = p.readBigUInt64BE(8);
  const flags = p[20]!;
  const specIPt = (flags & 0x08) !== 0;
  const aptpl = (flags & 0x01) !== 0;
  // A SCSI-2 reservation by someone else shuts out persistent reservations entirely.
  if (lu.scsi2Holder !== null && lu.scsi2Holder !== nexusKey) throw reservationConflict();
  const registered = pr.registrations.get(nexusKey);
  if (sa === PROUT_REGISTER || sa === PROUT_REGISTER_AND_IGNORE) {
    if (specIPt) throw invalidParameter(20, 3);
    if (aptpl && !pr.canPersist) throw invalidParameter(20, 0);
    if (sa === PROUT_REGISTER) {
      if (registered === undefined ? key !== 0n : key !== registered) throw reservationConflict();
    }
    if (saKey === 0n) {
      if (registered !== undefined) {
        const holderType = pr.reservation?.type;
        const released = pr.unregister(nexusKey);
        if (released && holderType !== undefined && (holderType === 5 || holderType === 6)) {
          // Registrants-only reservation lost its holder: tell the remaining registrants.
          ctx.services.unitAttentionForNexuses(lu, pr.registrations.keys(), Asc.RESERVATIONS_RELEASED);
        }
      }
    } else {
      pr.registrations.set(nexusKey, saKey);
    }
    pr.generation = (pr.generation + 1) >>> 0;
    pr.aptpl = aptpl;
    await pr.commit();
    return { transferLength: 24 };
  }
  if (specIPt || (flags & 0x04) !== 0) throw invalidParameter(20);
  if (registered === undefined || registered !== key) throw reservationConflict();
  switch (sa) {
    case PROUT_RESERVE: {
      if (scope !== 0) throw invalidField(2, 7);
      if (!isValidPrType(type)) throw invalidField(2, 3);
      const r = pr.reservation;
      if (r) {
        if (!pr.isHolder(nexusKey) || r.type !== type) throw reservationConflict();
        return { transferLength: 24 };
      }
      pr.reservation = { holder: nexusKey, type };
      await pr.commit();
      return { transferLength: 24 };
    }
    case PROUT_RELEASE: {
      const r = pr.reservation;
      if (!r || !pr.isHolder(nexusKey)) return { transferLength: 24 };
      if (scope !== 0 || r.type !== type) {
        throw checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION);
      }
      pr.reservation = null;
      if (r.type !== PrType.WRITE_EXCLUSIVE && r.type !== PrType.EXCLUSIVE_ACCESS) {
        const others = [...pr.registrations.keys()].filter((n) => n !== nexusKey);
        ctx.services.unitAttentionForNexuses(lu, others, Asc.RESERVATIONS_RELEASED);
      }
      await pr.commit();
      return { transferLength: 24 };
    }
    case PROUT_CLEAR: {
      const others = [...pr.registrations.keys()].filter((n) => n !== nexusKey);
      pr.clear();
      pr.generation = (pr.generation + 1) >>> 0;
      ctx.services.unitAttentionForNexuses(lu, others, Asc.RESERVATIONS_PREEMPTED);
      await pr.commit();
      return { transferLength: 24 };
    }
    default: // PREEMPT (4) and PREEMPT AND ABORT (5)
      return preempt(ctx, sa === PROUT_PREEMPT_AND_ABORT, saKey, scope, type);
  }
}

async function preempt(ctx: CommandContext, abort: boolean, saKey: bigint, scope: number, type: number) {
  const { lu, nexusKey } = ctx;
  const pr = lu.pr;
  const r = pr.reservation;
  const withKey = (k: bigint) =>
    [...pr.registrations].filter(([n, v]) => v === k && n !== nexusKey).map(([n]) => n);
  let removed: string[];
  if (!r) {
    if (saKey === 0n) throw invalidParameter(8);
    removed = withKey(saKey);
    if (removed.length === 0 && ![...pr.registrations.values()].includes(saKey)) throw reservationConflict();
  } else {
    const holderKey = isAllRegistrants(r.type) ? undefined : pr.registrations.get(r.holder);
    const takeOver = isAllRegistrants(r.type) ? saKey === 0n : saKey === holderKey;
    if (takeOver) {
      // Only a preemption that replaces the reservation uses SCOPE and TYPE.
      if (scope !== 0) throw invalidField(2, 7);
      if (!isValidPrType(type)) throw invalidField(2, 3);
      // With an all-registrants reservation, key 0 removes everyone else; otherwise the holder's key goes.
      removed = isAllRegistrants(r.type)
        ? [...pr.registrations.keys()].filter((n) => n !== nexusKey)
        : withKey(saKey);
      pr.reservation = { holder: nexusKey, type };
    } else {
      if (saKey === 0n) throw invalidParameter(8);
      removed = withKey(saKey);
      if (removed.length === 0 && ![...pr.registrations.values()].includes(saKey))
        throw reservationConflict();
    }
  }
  for (const n of removed) pr.registrations.delete(n);
  if (pr.reservation && isAllRegistrants(pr.reservation.type) && pr.registrations.size === 0)
    pr.reservation = null;
  pr.generation = (pr.generation + 1) >>> 0;
  ctx.services.unitAttentionForNexuses(lu, removed, Asc.REGISTRATIONS_PREEMPTED);
  if (abort) await ctx.services.abortTasksOf(lu, removed, ctx.task);
  await pr.commit();
  return { transferLength: 24 };
}

/** RESERVE(6) and RESERVE(10): SCSI-2 exclusive reservation of the whole LU by this I_T nexus. */
export function reserve(ctx: CommandContext): Reply {
  const { cdb, lu, nexusKey } = ctx;
  if (cdb.length >= 10 && cdb[0] === 0x56) {
    if ((cdb[1]! & 0x10) !== 0) throw invalidField(1, 4); // third-party reservations unsupported
    if ((cdb[1]! & 0x02) !== 0) throw invalidField(1, 1);
  } else if ((cdb[1]! & 0x01) !== 0) {
    throw invalidField(1, 0); // extents are obsolete
  }
  // Compatible reservation handling: SCSI-2 RESERVE conflicts with any persistent reservation state.
  if (lu.pr.reservation || lu.pr.registrations.size > 0) throw reservationConflict();
  if (lu.scsi2Holder !== null && lu.scsi2Holder !== nexusKey) throw reservationConflict();
  lu.scsi2Holder = nexusKey;
  return NO_DATA;
}

/** RELEASE(6) and RELEASE(10): releases our own SCSI-2 reservation; anyone else's stays (GOOD anyway). */
export function release(ctx: CommandContext): Reply {
  const { cdb, lu, nexusKey } = ctx;
  if (cdb.length >= 10 && cdb[0] === 0x57) reserved(cdb, 1, 0x12);
  else reserved(cdb, 1, 0x01);
  if (lu.scsi2Holder === nexusKey) lu.scsi2Holder = null;
  return NO_DATA;
}
