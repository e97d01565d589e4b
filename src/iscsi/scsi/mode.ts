import type { LogicalUnit } from '../lu/logical-unit.js';
import { type CommandContext, dataIn, NO_DATA, type Reply, reserved } from './command.js';
import { Asc, SenseKey } from './constants.js';
import { checkCondition, invalidField, invalidParameter, parameterListLengthError } from './sense.js';

/** Page control values of MODE SENSE. */
const PC_CHANGEABLE = 1;
const PC_DEFAULT = 2;
const PC_SAVED = 3;

const PAGE_CACHING = 0x08;
const PAGE_CONTROL = 0x0a;
const PAGE_INFORMATIONAL_EXCEPTIONS = 0x1c;
const ALL_PAGES = 0x3f;

/** Pages in the order MODE SENSE returns them for "all pages" (ascending page code). */
const PAGES = [PAGE_CACHING, PAGE_CONTROL, PAGE_INFORMATIONAL_EXCEPTIONS] as const;

interface PageValues {
  wce: boolean;
  swp: boolean;
}

function buildPage(code: number, v: PageValues, changeable: boolean): Buffer {
  switch (code) {
    case PAGE_CACHING: {
      const p = Buffer.alloc(20);
      p[0] = PAGE_CACHING;
      p[1] = 18;
      if (changeable) p[2] = 0x04;
      else p[2] = v.wce ? 0x04 : 0;
      return p;
    }
    case PAGE_CONTROL: {
      const p = Buffer.alloc(12);
      p[0] = PAGE_CONTROL;
      p[1] = 10;
      if (changeable) {
        p[4] = 0x08; // SWP
        return p;
      }
      p[2] = 0x02; // GLTSD: no log parameters are saved
      p[3] = 0x10; // queue algorithm modifier 1: unrestricted reordering
      p[4] = v.swp ? 0x08 : 0;
      p.writeUInt16BE(0xffff, 8); // busy timeout period: unlimited
      return p;
    }
    case PAGE_INFORMATIONAL_EXCEPTIONS: {
      const p = Buffer.alloc(12);
      p[0] = PAGE_INFORMATIONAL_EXCEPTIONS;
      p[1] = 10;
      if (!changeable) p[2] = 0x08; // DEXCPT: we report no informational exceptions
      return p;
    }
    default:
      throw new Error(`no mode page 0x${code.toString(16)}`);
  }
}

function valuesFor(lu: LogicalUnit, pc: number): PageValues {
  if (pc === PC_DEFAULT) return { wce: true, swp: false };
  return { wce: lu.writeCacheEnabled, swp: lu.softwareWriteProtect };
}

function blockDescriptor(lu: LogicalUnit, long: boolean): Buffer {
  if (long) {
    const d = Buffer.alloc(16);
    d.writeBigUInt64BE(BigInt(lu.capacity), 0);
    d.writeUInt32BE(lu.blockSize, 12);
    return d;
  }
  const d = Buffer.alloc(8);
  d.writeUInt32BE(Math.min(lu.capacity, 0xffffffff), 0);
  d.writeUInt32BE(lu.blockSize & 0xffffff, 4);
  return d;
}

/** MODE SENSE(6) and MODE SENSE(10). */
export function modeSense(ctx: CommandContext): Reply {
  const { cdb, lu } = ctx;
  const ten = cdb.length >= 10 && cdb[0] === 0x5a;
  reserved(cdb, 1, ten ? 0xe7 : 0xf7);
  const dbd = (cdb[1]! & 0x08) !== 0;
  const llbaa = ten && (cdb[1]! & 0x10) !== 0;
  const pc = cdb[2]! >> 6;
  const page = cdb[2]! & 0x3f;
  const subpage = cdb[3]!;
  const alloc = ten ? cdb.readUInt16BE(7) : cdb[4]!;
  if (pc === PC_SAVED) {
    throw checkCondition(SenseKey.ILLEGAL_REQUEST, Asc.SAVING_PARAMETERS_NOT_SUPPORTED, {
      fieldPointer: { cdb: true, byte: 2, bit: 7 },
    });
  }
  let codes: readonly number[];
  if (page === ALL_PAGES) {
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidField(3);
    codes = PAGES;
  } else {
    if (!(PAGES as readonly number[]).includes(page)) throw invalidField(2, 5);
    // None of our pages has subpages; 0xFF asks for "the page and all its subpages".
    if (subpage !== 0x00 && subpage !== 0xff) throw invalidField(3);
    codes = [page];
  }
  const values = valuesFor(lu, pc);
  const pages = codes.map((c) => buildPage(c, values, pc === PC_CHANGEABLE));
  const bd = dbd ? Buffer.alloc(0) : blockDescriptor(lu, llbaa);
  // WP reflects the mapping and SWP; DPOFUA: DPO and FUA are honoured.
  const deviceSpecific = (lu.writeProtected ? 0x80 : 0) | 0x10;
  let header: Buffer;
  const pagesLength = pages.reduce((n, p) => n + p.length, 0);
  if (ten) {
    header = Buffer.alloc(8);
    header.writeUInt16BE(6 + bd.length + pagesLength, 0);
    header[3] = deviceSpecific;
    header[4] = llbaa && bd.length > 0 ? 0x01 : 0;
    header.writeUInt16BE(bd.length, 6);
  } else {
    header = Buffer.alloc(4);
    header[0] = 3 + bd.length + pagesLength;
    header[2] = deviceSpecific;
    header[3] = bd.length;
  }
  return dataIn(Buffer.concat([header, bd, ...pages]), alloc);
}

/** MODE SELECT(6) and MODE SELECT(10): only WCE and SWP can change. */
export function modeSelect(ctx: CommandContext): Reply {
  const { cdb, lu, dataOut } = ctx;
  const ten = cdb[0] === 0x55;
  reserved(cdb, 1, 0xee);
  if ((cdb[1]! & 0x01) !== 0) throw invalidField(1, 0); // SP: nothing can be saved
  const pf = (cdb[1]! & 0x10) !== 0;
  const listLength = ten ? cdb.readUInt16BE(7) : cdb[4]!;
  if (listLength === 0) return NO_DATA;
  if (!pf) throw invalidField(1, 4);
  const headerLength = ten ? 8 : 4;
  if (dataOut.length < listLength || listLength < headerLength) throw parameterListLengthError();
  const data = dataOut.subarray(0, listLength);
  const bdLength = ten ? data.readUInt16BE(6) : data[3]!;
  const long = ten && (data[4]! & 0x01) !== 0;
  const step = long ? 16 : 8;
  if (bdLength % step !== 0) throw invalidParameter(ten ? 6 : 3);
  if (headerLength + bdLength > listLength) throw parameterListLengthError();
  for (let off = headerLength; off < headerLength + bdLength; off += step) {
    // A block descriptor may only restate the block length (a zero length means "unchanged").
    const len = long ? data.readUInt32BE(off + 12) : data.readUIntBE(off + 5, 3);
    if (len !== 0 && len !== lu.blockSize) throw invalidParameter(off + (long ? 12 : 5));
  }
  let wce = lu.writeCacheEnabled;
  let swp = lu.softwareWriteProtect;
  let off = headerLength + bdLength;
  while (off < listLength) {
    if (off + 2 > listLength) throw parameterListLengthError();
    const code = data[off]! & 0x3f;
    if ((data[off]! & 0x40) !== 0) throw invalidParameter(off, 6); // SPF: we have no subpages
    const len = data[off + 1]!;
    if (off + 2 + len > listLength) throw parameterListLengthError();
    if (!(PAGES as readonly number[]).includes(code)) throw invalidParameter(off);
    const current = buildPage(code, { wce, swp }, false);
    const mask = buildPage(code, { wce, swp }, true);
    if (len !== current.length - 2) throw invalidParameter(off + 1);
    const given = data.subarray(off, off + 2 + len);
    // Any bit outside the changeable mask must equal its current value.
    for (let i = 2; i < current.length; i++) {
      if (((given[i]! ^ current[i]!) & ~mask[i]!) !== 0) throw invalidParameter(off + i);
    }
    if (code === PAGE_CACHING) wce = (given[2]! & 0x04) !== 0;
    if (code === PAGE_CONTROL) swp = (given[4]! & 0x08) !== 0;
    off += 2 + len;
  }
  const changed = wce !== lu.writeCacheEnabled || swp !== lu.softwareWriteProtect;
  lu.writeCacheEnabled = wce;
  lu.softwareWriteProtect = swp;
  if (changed) ctx.services.unitAttentionForLu(lu, Asc.MODE_PARAMETERS_CHANGED, ctx.nexusKey);
  return { transferLength: listLength };
}
