/**
 * Operational key negotiation, target side (RFC 7143 §6.2 and §13).
 *
 * The initiator offers; we answer each key with the value its result function yields from the offer and our
 * own setting, or with Reject (unparseable / out of range), Irrelevant (meaningless for the session type) or
 * NotUnderstood (unknown key). Declarative keys (MaxRecvDataSegmentLength) are recorded and answered with our
 * own declaration. We only originate a key when the RFC default would break one of our limits.
 */
import type { KeyValue } from './text.js';

export type DigestName = 'None' | 'CRC32C';
export type SessionType = 'Normal' | 'Discovery';

/** What this target accepts or prefers; the login result never exceeds these. */
export interface TargetParams {
  /** Our declared MaxRecvDataSegmentLength: the largest data segment we accept. */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  maxOutstandingR2T: number;
  /** Our InitialR2T value (OR): false lets the initiator send unsolicited Data-Out if it wants to. */
  initialR2T: boolean;
  /** Our ImmediateData value (AND). */
  immediateData: boolean;
  /** Our DataPDUInOrder value (OR): true forces in-order Data-Out PDUs. */
  dataPDUInOrder: boolean;
  /** Our DataSequenceInOrder value (OR). */
  dataSequenceInOrder: boolean;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  /** Highest ErrorRecoveryLevel implemented (min). */
  errorRecoveryLevel: number;
  /** Connections per session implemented (min). */
  maxConnections: number;
  /** Digests we accept, in no particular order: the initiator's order decides. */
  headerDigest: readonly DigestName[];
  dataDigest: readonly DigestName[];
}

/**
 * Defaults chosen for throughput with Linux initiators (open-iscsi, libiscsi) while bounding per-command
 * buffering: 256 KiB segments match both initiators' MaxRecvDataSegmentLength, a 1 MiB burst lets one R2T
 * cover a whole 1 MiB write, and 256 KiB of unsolicited data means writes up to that size need no R2T
 * round trip. In-order data keeps Data-Out reassembly a simple append. ERL 0, one connection per session.
 */
export const DEFAULT_TARGET_PARAMS: Readonly<TargetParams> = Object.freeze({
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  maxOutstandingR2T: 1,
  initialR2T: false,
  immediateData: true,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  defaultTime2Wait: 2,
  defaultTime2Retain: 0,
  errorRecoveryLevel: 0,
  maxConnections: 1,
  headerDigest: Object.freeze(['CRC32C', 'None'] as DigestName[]),
  dataDigest: Object.freeze(['CRC32C', 'None'] as DigestName[]),
});

/** Throws a RangeError naming the first setting outside what RFC 7143 (or this implementation) allows. */
export function validateTargetParams(c: TargetParams): void {
  const check = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new RangeError(`${name}=${v} is outside ${lo}..${hi}`);
  };
  check('maxRecvDataSegmentLength', c.maxRecvDataSegmentLength, 512, 16777215);
  check('maxBurstLength', c.maxBurstLength, 512, 16777215);
  check('firstBurstLength', c.firstBurstLength, 512, c.maxBurstLength);
  check('maxOutstandingR2T', c.maxOutstandingR2T, 1, 65535);
  check('defaultTime2Wait', c.defaultTime2Wait, 0, 3600);
  check('defaultTime2Retain', c.defaultTime2Retain, 0, 3600);
  check('errorRecoveryLevel', c.errorRecoveryLevel, 0, 0);
  check('maxConnections', c.maxConnections, 1, 1);
  for (const d of [...c.headerDigest, ...c.dataDigest]) {
    if (d !== 'None' && d !== 'CRC32C') throw new RangeError(`unknown digest ${d}`);
  }
  if (c.headerDigest.length === 0 || c.dataDigest.length === 0) throw new RangeError('no digest allowed');
}

/** The operational parameters of a session/connection once login completes. */
export interface NegotiatedParams {
  headerDigest: DigestName;
  dataDigest: DigestName;
  /** The initiator's declaration: the largest data segment we may send (Data-In, Text/Login responses). */
  initiatorMaxRecvDataSegmentLength: number;
  /** Our declaration: the largest data segment the initiator may send us. */
  targetMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxOutstandingR2T: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  maxConnections: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  ifMarker: boolean;
  ofMarker: boolean;
}

/** RFC 7143 §13 defaults: what applies to any key nobody negotiated. */
export const RFC_DEFAULTS: Readonly<NegotiatedParams> = Object.freeze({
  headerDigest: 'None',
  dataDigest: 'None',
  initiatorMaxRecvDataSegmentLength: 8192,
  targetMaxRecvDataSegmentLength: 8192,
  maxBurstLength: 262144,
  firstBurstLength: 65536,
  initialR2T: true,
  immediateData: true,
  maxOutstandingR2T: 1,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  errorRecoveryLevel: 0,
  maxConnections: 1,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  ifMarker: false,
  ofMarker: false,
});

/** Range of MaxRecvDataSegmentLength, MaxBurstLength and FirstBurstLength (RFC 7143 §13). */
export const MIN_DATA_SEGMENT = 512;
export const MAX_DATA_SEGMENT = 16777215;

type NumKey = {
  [K in keyof NegotiatedParams]: NegotiatedParams[K] extends number ? K : never;
}[keyof NegotiatedParams];
type BoolKey = {
  [K in keyof NegotiatedParams]: NegotiatedParams[K] extends boolean ? K : never;
}[keyof NegotiatedParams];

/** How one key is negotiated. `ours` reads our setting for it. */
type KeySpec = (
  | { kind: 'min' | 'max'; param: NumKey; lo: number; hi: number; ours: (c: TargetParams) => number }
  | { kind: 'or' | 'and'; param: BoolKey; ours: (c: TargetParams) => boolean }
  | { kind: 'digest'; param: 'headerDigest' | 'dataDigest'; ours: (c: TargetParams) => readonly DigestName[] }
  | { kind: 'list'; values: readonly string[] }
  | { kind: 'mrdsl' }
  | { kind: 'irrelevant' }
  /** Obsolete or unsupported features we answer with a fixed value (markers, iSER). */
  | { kind: 'fixed'; value: string; lo?: number; hi?: number }
) & {
  /** Answer Irrelevant in Discovery sessions (RFC 7143 §13: "Irrelevant when: SessionType=Discovery"). */
  discoveryIrrelevant?: boolean;
  /** Offer it ourselves if the initiator stays silent and the default would break our limit. */
  mustOffer?: boolean;
};

const KEYS: Readonly<Record<string, KeySpec>> = {
  HeaderDigest: { kind: 'digest', param: 'headerDigest', ours: (c) => c.headerDigest, mustOffer: true },
  DataDigest: { kind: 'digest', param: 'dataDigest', ours: (c) => c.dataDigest, mustOffer: true },
  MaxRecvDataSegmentLength: { kind: 'mrdsl' },
  MaxBurstLength: {
    kind: 'min',
    param: 'maxBurstLength',
    lo: MIN_DATA_SEGMENT,
    hi: MAX_DATA_SEGMENT,
    ours: (c) => c.maxBurstLength,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  FirstBurstLength: {
    kind: 'min',
    param: 'firstBurstLength',
    lo: MIN_DATA_SEGMENT,
    hi: MAX_DATA_SEGMENT,
    ours: (c) => c.firstBurstLength,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  MaxConnections: {
    kind: 'min',
    param: 'maxConnections',
    lo: 1,
    hi: 65535,
    ours: (c) => c.maxConnections,
    mustOffer: true,
  },
  MaxOutstandingR2T: {
    kind: 'min',
    param: 'maxOutstandingR2T',
    lo: 1,
    hi: 65535,
    ours: (c) => c.maxOutstandingR2T,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  DefaultTime2Wait: {
    kind: 'max',
    param: 'defaultTime2Wait',
    lo: 0,
    hi: 3600,
    ours: (c) => c.defaultTime2Wait,
  },
  DefaultTime2Retain: {
    kind: 'min',
    param: 'defaultTime2Retain',
    lo: 0,
    hi: 3600,
    ours: (c) => c.defaultTime2Retain,
  },
  ErrorRecoveryLevel: {
    kind: 'min',
    param: 'errorRecoveryLevel',
    lo: 0,
    hi: 2,
    ours: (c) => c.errorRecoveryLevel,
    mustOffer: true,
  },
  InitialR2T: {
    kind: 'or',
    param: 'initialR2T',
    ours: (c) => c.initialR2T,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  ImmediateData: {
    kind: 'and',
    param: 'immediateData',
    ours: (c) => c.immediateData,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  DataPDUInOrder: {
    kind: 'or',
    param: 'dataPDUInOrder',
    ours: (c) => c.dataPDUInOrder,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  DataSequenceInOrder: {
    kind: 'or',
    param: 'dataSequenceInOrder',
    ours: (c) => c.dataSequenceInOrder,
    discoveryIrrelevant: true,
    mustOffer: true,
  },
  // Markers were dropped by RFC 7143 but old initiators still send them: AND with our No.
  IFMarker: { kind: 'fixed', value: 'No' },
  OFMarker: { kind: 'fixed', value: 'No' },
  // With markers off their intervals are irrelevant.
  IFMarkInt: { kind: 'irrelevant' },
  OFMarkInt: { kind: 'irrelevant' },
  TaskReporting: { kind: 'list', values: ['RFC3720'], discoveryIrrelevant: true },
  // RFC 7144: level 1 is RFC 7143 itself; result function is min.
  iSCSIProtocolLevel: { kind: 'fixed', value: '1', lo: 0, hi: 31 },
  // iSER (RFC 7145): libiscsi offers RDMAExtensions even over TCP; AND with our No.
  RDMAExtensions: { kind: 'fixed', value: 'No' },
  InitiatorRecvDataSegmentLength: { kind: 'irrelevant' },
  TargetRecvDataSegmentLength: { kind: 'irrelevant' },
  MaxOutstandingUnexpectedPDUs: { kind: 'irrelevant' },
};

/** True for the operational keys this module negotiates. */
export function isOperationalKey(key: string): boolean {
  return Object.hasOwn(KEYS, key);
}

/**
 * Parses an iSCSI numerical value: decimal or 0x-hex (RFC 7143 §6.1). Returns undefined when malformed
 * or beyond 2^53.
 */
export function parseNumber(s: string): number | undefined {
  let n: number;
  if (/^[0-9]{1,16}$/.test(s)) n = Number(s);
  else if (/^0[xX][0-9a-fA-F]{1,13}$/.test(s)) n = Number.parseInt(s.slice(2), 16);
  else return undefined;
  return Number.isSafeInteger(n) ? n : undefined;
}

function parseBool(s: string): boolean | undefined {
  return s === 'Yes' ? true : s === 'No' ? false : undefined;
}

const yesNo = (b: boolean) => (b ? 'Yes' : 'No');

/** Result of answering one batch of keys. */
export interface NegotiationOutcome {
  responses: KeyValue[];
  /** Set when the initiator's answer to one of our offers is unacceptable: fail the login (0x0200). */
  failure?: string;
}

/**
 * Negotiates the operational keys of one login (or of a Text exchange in full feature phase, for the few
 * keys allowed there). Holds the parameters agreed so far, starting from the RFC defaults.
 */
export class Negotiator {
  readonly params: NegotiatedParams;
  /** Keys the initiator has offered (and we answered). */
  private readonly seen = new Set<string>();
  /** Our outstanding offers: key → the value we offered. */
  private readonly offers = new Map<string, string>();
  private mrdslDeclared = false;

  constructor(
    private readonly cfg: TargetParams,
    private readonly sessionType: SessionType,
  ) {
    this.params = { ...RFC_DEFAULTS };
  }

  /** True while we wait for the initiator to answer keys we offered. */
  get awaitingAnswers(): boolean {
    return this.offers.size > 0;
  }

  /** Whether our MaxRecvDataSegmentLength declaration has been sent. */
  get declaredMaxRecvDataSegmentLength(): boolean {
    return this.mrdslDeclared;
  }

  /** Answers the operational keys in `pairs` (others are the caller's), in order. */
  negotiate(pairs: readonly KeyValue[]): NegotiationOutcome {
    const responses: KeyValue[] = [];
    let failure: string | undefined;
    for (const [key, value] of pairs) {
      const spec = KEYS[key];
      if (!spec) {
        responses.push([key, 'NotUnderstood']);
        continue;
      }
      const offered = this.offers.get(key);
      if (offered !== undefined) {
        this.offers.delete(key);
        this.seen.add(key);
        const err = this.acceptAnswer(key, spec, offered, value);
        if (err) failure ??= err;
        continue;
      }
      this.seen.add(key);
      const answer = this.answer(spec, value);
      if (answer !== undefined) responses.push([key, answer]);
      // Rejecting a digest offer leaves the key at its default, None: a target that requires CRC32C (None not
      // among ours) cannot run that session, so the login fails instead.
      if (answer === 'Reject' && spec.kind === 'digest' && !spec.ours(this.cfg).includes('None')) {
        failure ??= `${key}=${value} offers no digest this target accepts (${spec.ours(this.cfg).join(',')} required)`;
      }
    }
    this.clampFirstBurst(responses);
    return failure ? { responses, failure } : { responses };
  }

  /**
   * Our declaration of MaxRecvDataSegmentLength, if not made yet. The login sends it in its first
   * operational response (or its final one when the initiator skips that stage).
   */
  declarations(): KeyValue[] {
    if (this.mrdslDeclared) return [];
    this.mrdslDeclared = true;
    this.params.targetMaxRecvDataSegmentLength = this.cfg.maxRecvDataSegmentLength;
    return [['MaxRecvDataSegmentLength', String(this.cfg.maxRecvDataSegmentLength)]];
  }

  /**
   * Keys we must originate before leaving operational negotiation: those the initiator never sent whose RFC
   * default our settings cannot accept (e.g. MaxBurstLength configured below 262144). Each is offered once;
   * the login must not transit until {@link awaitingAnswers} is false.
   */
  offersNeeded(): KeyValue[] {
    const out: KeyValue[] = [];
    for (const [key, spec] of Object.entries(KEYS)) {
      if (!spec.mustOffer || this.seen.has(key) || this.offers.has(key)) continue;
      if (spec.discoveryIrrelevant && this.sessionType === 'Discovery') continue;
      let offer: string | undefined;
      switch (spec.kind) {
        case 'min':
        case 'max': {
          const def = RFC_DEFAULTS[spec.param];
          let ours = spec.ours(this.cfg);
          // A negotiated MaxBurstLength below the default FirstBurstLength also needs a FirstBurstLength offer.
          if (spec.param === 'firstBurstLength')
            ours = Math.min(ours, this.params.maxBurstLength, this.cfg.maxBurstLength);
          const result = spec.kind === 'min' ? Math.min(def, ours) : Math.max(def, ours);
          if (result !== def) offer = String(ours);
          break;
        }
        case 'or':
        case 'and': {
          const def = RFC_DEFAULTS[spec.param];
          const ours = spec.ours(this.cfg);
          const result = spec.kind === 'or' ? def || ours : def && ours;
          if (result !== def) offer = yesNo(ours);
          break;
        }
        case 'digest': {
          const ours = spec.ours(this.cfg);
          if (!ours.includes(RFC_DEFAULTS[spec.param])) offer = ours.join(',');
          break;
        }
        default:
          break;
      }
      if (offer !== undefined) {
        this.offers.set(key, offer);
        out.push([key, offer]);
      }
    }
    return out;
  }

  private answer(spec: KeySpec, value: string): string | undefined {
    if (spec.discoveryIrrelevant && this.sessionType === 'Discovery') return 'Irrelevant';
    switch (spec.kind) {
      case 'min':
      case 'max': {
        const n = parseNumber(value);
        if (n === undefined || n < spec.lo || n > spec.hi) return 'Reject';
        const ours = spec.ours(this.cfg);
        const result = spec.kind === 'min' ? Math.min(n, ours) : Math.max(n, ours);
        this.params[spec.param] = result;
        return String(result);
      }
      case 'or':
      case 'and': {
        const b = parseBool(value);
        if (b === undefined) return 'Reject';
        const ours = spec.ours(this.cfg);
        const result = spec.kind === 'or' ? b || ours : b && ours;
        this.params[spec.param] = result;
        return yesNo(result);
      }
      case 'digest': {
        const ours = spec.ours(this.cfg);
        const pick = value.split(',').find((v): v is DigestName => (ours as readonly string[]).includes(v));
        if (!pick) return 'Reject';
        this.params[spec.param] = pick;
        return pick;
      }
      case 'list': {
        const pick = value.split(',').find((v) => spec.values.includes(v));
        return pick ?? 'Reject';
      }
      case 'mrdsl': {
        const n = parseNumber(value);
        if (n === undefined || n < MIN_DATA_SEGMENT) return 'Reject';
        // Larger than the field can express is harmless: we never send more than 2^24-1 anyway.
        this.params.initiatorMaxRecvDataSegmentLength = Math.min(n, MAX_DATA_SEGMENT);
        this.mrdslDeclared = true;
        this.params.targetMaxRecvDataSegmentLength = this.cfg.maxRecvDataSegmentLength;
        return String(this.cfg.maxRecvDataSegmentLength);
      }
      case 'irrelevant':
        return 'Irrelevant';
      case 'fixed': {
        if (spec.lo !== undefined) {
          const n = parseNumber(value);
          if (n === undefined || n < spec.lo || n > (spec.hi ?? n)) return 'Reject';
          return String(Math.min(n, Number(spec.value)));
        }
        return parseBool(value) === undefined ? 'Reject' : spec.value;
      }
    }
  }

  /** Validates the initiator's answer to our offer (RFC 7143 §6.2: it must obey the result function). */
  private acceptAnswer(key: string, spec: KeySpec, offered: string, value: string): string | undefined {
    switch (spec.kind) {
      case 'min':
      case 'max': {
        const n = parseNumber(value);
        const ours = Number(offered);
        const ok =
          n !== undefined && n >= spec.lo && (spec.kind === 'min' ? n <= ours : n >= ours && n <= spec.hi);
        if (!ok) return `unacceptable answer ${key}=${value} to our offer ${offered}`;
        this.params[spec.param] = n;
        return undefined;
      }
      case 'or':
      case 'and': {
        const b = parseBool(value);
        const ours = offered === 'Yes';
        const expected = spec.kind === 'or' ? ours || b : ours && b;
        if (b === undefined || b !== expected)
          return `unacceptable answer ${key}=${value} to our offer ${offered}`;
        this.params[spec.param] = b;
        return undefined;
      }
      case 'digest': {
        if (!offered.split(',').includes(value))
          return `unacceptable answer ${key}=${value} to our offer ${offered}`;
        this.params[spec.param] = value as DigestName;
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** FirstBurstLength must not exceed MaxBurstLength (RFC 7143 §13.14), whatever order they came in. */
  private clampFirstBurst(responses: KeyValue[]): void {
    const p = this.params;
    if (p.firstBurstLength <= p.maxBurstLength) return;
    p.firstBurstLength = p.maxBurstLength;
    for (const r of responses)
      if (r[0] === 'FirstBurstLength' && r[1] !== 'Reject') r[1] = String(p.firstBurstLength);
  }
}
