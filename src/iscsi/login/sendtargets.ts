/**
 * Text requests in full feature phase (RFC 7143 §11.10–11.11): the continuation protocol in both directions,
 * and the keys we answer there — SendTargets (discovery, Appendix C) and MaxRecvDataSegmentLength.
 */
import { RESERVED_TAG, RejectReason } from '../pdu/constants.js';
import type { TextRequestPdu } from '../pdu/types.js';
import { MAX_DATA_SEGMENT, MIN_DATA_SEGMENT, parseNumber, type SessionType } from './negotiate.js';
import { encodeText, type KeyValue, parseText, splitText, TextAssembler, TextFormatError } from './text.js';

/** One network portal of a target: where initiators connect. */
export interface TargetPortal {
  /** IPv4 or IPv6 literal (IPv6 is bracketed on output), or a DNS name. */
  address: string;
  port: number;
  portalGroupTag: number;
}

/** A target as SendTargets may report it. `visible` is the ACL verdict for the asking initiator. */
export interface SendTargetsTarget {
  name: string;
  portals: readonly TargetPortal[];
  visible: boolean;
}

/** TargetAddress value: `host:port,tpgt`, with IPv6 literals in brackets (RFC 7143 §13.8). */
export function formatTargetAddress(p: TargetPortal): string {
  const host = p.address.includes(':') && !p.address.startsWith('[') ? `[${p.address}]` : p.address;
  return `${host}:${p.port},${p.portalGroupTag}`;
}

/**
 * Answer to `SendTargets=<value>`: TargetName then its TargetAddress entries, for each target the initiator
 * may see. `All` lists every visible target and is only valid in Discovery sessions; an empty value means the
 * session's own target and is only valid in Normal sessions; a name lists that target if visible. Targets
 * the ACL hides are never listed, so an unauthorized initiator gets an empty answer, not an error.
 */
export function sendTargetsResponse(
  value: string,
  ctx: { sessionType: SessionType; sessionTarget?: string; targets: readonly SendTargetsTarget[] },
): KeyValue[] {
  let chosen: readonly SendTargetsTarget[];
  if (value === 'All') {
    if (ctx.sessionType !== 'Discovery') return [['SendTargets', 'Reject']];
    chosen = ctx.targets;
  } else if (value === '') {
    if (ctx.sessionType !== 'Normal' || !ctx.sessionTarget) return [['SendTargets', 'Reject']];
    const name = ctx.sessionTarget.toLowerCase();
    chosen = ctx.targets.filter((t) => t.name.toLowerCase() === name);
  } else {
    const name = value.toLowerCase();
    chosen = ctx.targets.filter((t) => t.name.toLowerCase() === name);
  }
  const out: KeyValue[] = [];
  for (const t of chosen) {
    if (!t.visible) continue;
    out.push(['TargetName', t.name]);
    for (const p of t.portals) out.push(['TargetAddress', formatTargetAddress(p)]);
  }
  return out;
}

/** Context for answering a full-feature-phase Text Request. */
export interface TextContext {
  sessionType: SessionType;
  /** The session's target (Normal sessions). */
  sessionTarget?: string;
  targets: readonly SendTargetsTarget[];
  /** Our MaxRecvDataSegmentLength, re-declared when the initiator re-declares its own. */
  targetMaxRecvDataSegmentLength: number;
}

export interface TextAnswer {
  responses: KeyValue[];
  /** Set when the initiator re-declared its MaxRecvDataSegmentLength: apply it to what we send from now on. */
  initiatorMaxRecvDataSegmentLength?: number;
}

/** Keys RFC 7143 allows only during login: renegotiating them in full feature phase is answered Reject. */
const LOGIN_ONLY = new Set([
  'HeaderDigest',
  'DataDigest',
  'MaxConnections',
  'InitialR2T',
  'ImmediateData',
  'MaxBurstLength',
  'FirstBurstLength',
  'DefaultTime2Wait',
  'DefaultTime2Retain',
  'MaxOutstandingR2T',
  'DataPDUInOrder',
  'DataSequenceInOrder',
  'ErrorRecoveryLevel',
  'SessionType',
  'InitiatorName',
  'TargetName',
  'AuthMethod',
  'IFMarker',
  'OFMarker',
  'TaskReporting',
  'iSCSIProtocolLevel',
  'RDMAExtensions',
]);

/** Answers the keys of a complete full-feature-phase Text Request. */
export function answerTextRequest(pairs: readonly KeyValue[], ctx: TextContext): TextAnswer {
  const answer: TextAnswer = { responses: [] };
  for (const [key, value] of pairs) {
    if (key === 'SendTargets') {
      answer.responses.push(...sendTargetsResponse(value, ctx));
    } else if (key === 'MaxRecvDataSegmentLength') {
      const n = parseNumber(value);
      if (n === undefined || n < MIN_DATA_SEGMENT) answer.responses.push([key, 'Reject']);
      else {
        answer.initiatorMaxRecvDataSegmentLength = Math.min(n, MAX_DATA_SEGMENT);
        answer.responses.push([key, String(ctx.targetMaxRecvDataSegmentLength)]);
      }
    } else if (key === 'InitiatorAlias') {
      // Declarative, allowed at any time; nothing to answer.
    } else if (LOGIN_ONLY.has(key)) {
      answer.responses.push([key, 'Reject']);
    } else {
      answer.responses.push([key, 'NotUnderstood']);
    }
  }
  return answer;
}

/** Fields of a Text Response the exchange decides; the session adds ITT, LUN and sequence numbers. */
export interface TextReply {
  final: boolean;
  continue: boolean;
  ttt: number;
  data: Buffer;
}

/** What one Text Request produced. */
export type TextReceived =
  /** Send this reply (an acknowledgement of continued input, or the next part of our long answer). */
  | { kind: 'reply'; reply: TextReply }
  /** A complete request: answer it (e.g. with {@link answerTextRequest}) and pass the result to reply(). */
  | { kind: 'request'; pairs: KeyValue[]; final: boolean }
  /** Protocol violation: send a Reject with this reason carrying the request's header. */
  | { kind: 'reject'; reason: string; rejectReason: number };

export interface TextExchangeOptions {
  /** Largest data segment we may send: the initiator's MaxRecvDataSegmentLength. */
  maxSegmentLength: number;
  /** Bound on one (possibly continued) request; default 64 KiB. */
  maxTextLength?: number;
  /** Target transfer tags for continuations; default a private counter. */
  nextTtt?: () => number;
}

/**
 * The continuation protocol of Text Request/Response for one connection. Inbound text with C=1 is
 * acknowledged with empty responses and reassembled; an answer longer than the initiator's
 * MaxRecvDataSegmentLength goes out in parts with C=1, each fetched by an empty request bearing our TTT.
 * A request with TTT 0xffffffff always starts afresh (RFC 7143 §11.10.4).
 */
export class TextExchange {
  private readonly assembler: TextAssembler;
  private maxSegment: number;
  private readonly nextTttFn: () => number;
  private counter = 0;
  private ttt = RESERVED_TAG;
  private itt = RESERVED_TAG;
  private pending: Buffer[] = [];
  private requestFinal = true;

  constructor(opts: TextExchangeOptions) {
    this.maxSegment = opts.maxSegmentLength;
    this.assembler = new TextAssembler(opts.maxTextLength ?? 65536);
    this.nextTttFn =
      opts.nextTtt ??
      (() => {
        this.counter = (this.counter + 1) >>> 0;
        if (this.counter === RESERVED_TAG || this.counter === 0) this.counter = 1;
        return this.counter;
      });
  }

  /** Updates the segment bound (after the initiator re-declares MaxRecvDataSegmentLength). */
  setMaxSegmentLength(n: number): void {
    this.maxSegment = n;
  }

  /** Feeds one Text Request. */
  receive(req: Pick<TextRequestPdu, 'itt' | 'ttt' | 'final' | 'continue' | 'data'>): TextReceived {
    const data = req.data ?? Buffer.alloc(0);
    if (req.ttt === RESERVED_TAG) {
      this.reset();
      this.itt = req.itt;
    } else if (req.ttt !== this.ttt || req.itt !== this.itt) {
      this.reset();
      return {
        kind: 'reject',
        reason: 'Text Request with an unknown TTT',
        rejectReason: RejectReason.InvalidPduField,
      };
    }

    if (this.pending.length > 0) {
      if (data.length > 0 || req.continue) {
        this.reset();
        return {
          kind: 'reject',
          reason: 'text sent while our answer was continuing',
          rejectReason: RejectReason.ProtocolError,
        };
      }
      return { kind: 'reply', reply: this.nextPart() };
    }

    if (req.continue && req.final) {
      this.reset();
      return { kind: 'reject', reason: 'F and C bits both set', rejectReason: RejectReason.ProtocolError };
    }
    let text: Buffer | undefined;
    try {
      text = this.assembler.push(data, req.continue === true);
    } catch (err) {
      this.reset();
      return { kind: 'reject', reason: (err as Error).message, rejectReason: RejectReason.ProtocolError };
    }
    if (text === undefined) {
      this.ttt = this.nextTttFn();
      return {
        kind: 'reply',
        reply: { final: false, continue: false, ttt: this.ttt, data: Buffer.alloc(0) },
      };
    }
    try {
      const pairs = parseText(text);
      this.requestFinal = req.final === true;
      return { kind: 'request', pairs, final: this.requestFinal };
    } catch (err) {
      this.reset();
      if (err instanceof TextFormatError) {
        return { kind: 'reject', reason: err.message, rejectReason: RejectReason.ProtocolError };
      }
      throw err;
    }
  }

  /** The first (or only) part of our answer to the request just received. */
  reply(answer: readonly KeyValue[] | Buffer): TextReply {
    const text = Buffer.isBuffer(answer) ? answer : encodeText(answer);
    this.pending = splitText(text, this.maxSegment);
    return this.nextPart();
  }

  private nextPart(): TextReply {
    const data = this.pending.shift() ?? Buffer.alloc(0);
    if (this.pending.length > 0) {
      this.ttt = this.nextTttFn();
      return { final: false, continue: true, ttt: this.ttt, data };
    }
    // A final response may only answer a final request (RFC 7143 §11.11.1); otherwise keep the exchange open.
    if (!this.requestFinal) {
      this.ttt = this.nextTttFn();
      return { final: false, continue: false, ttt: this.ttt, data };
    }
    this.ttt = RESERVED_TAG;
    return { final: true, continue: false, ttt: RESERVED_TAG, data };
  }

  private reset(): void {
    this.assembler.reset();
    this.pending = [];
    this.ttt = RESERVED_TAG;
    this.requestFinal = true;
  }
}
