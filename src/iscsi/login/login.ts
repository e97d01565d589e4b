/**
 * The login state machine, target side (RFC 7143 §6.3, §11.12–11.13), sans-IO: Login Request PDUs in,
 * Login Response PDUs out. One instance per connection, discarded once the login completes or fails.
 *
 * Stages: security (AuthMethod, CHAP) → operational (key negotiation) → full feature. The security stage
 * is skipped when the initiator starts in the operational stage and no CHAP is required. Text spanning
 * several PDUs (C bit) is reassembled inbound and split outbound.
 */
import type { ChapCredentials } from '../../exports/types.js';
import { LoginStatus, Stage } from '../pdu/constants.js';
import type { LoginRequestPdu, LoginResponsePdu } from '../pdu/types.js';
import { ChapTargetAuth, isChapKey } from './chap.js';
import {
  DEFAULT_TARGET_PARAMS,
  type NegotiatedParams,
  Negotiator,
  type SessionType,
  type TargetParams,
  validateTargetParams,
} from './negotiate.js';
import { encodeText, type KeyValue, parseText, splitText, TextAssembler, TextFormatError } from './text.js';

/** What the ACL says about one initiator for our target. */
export interface InitiatorAccess {
  /** The initiator may log in to the target (it has at least one LUN, directly or via a group). */
  allowed: boolean;
  /** Its CHAP credentials; CHAP is required when `in_user` and `in_pass` are set. */
  auth: ChapCredentials | null;
}

/** Where the login handler gets its decisions; implemented by the session/export layer. */
export interface LoginPolicy {
  /** Our target's IQN (compared case-insensitively, as iSCSI names are). */
  targetName: string;
  targetAlias?: string;
  portalGroupTag: number;
  /** ACL and CHAP of an initiator logging in to `targetName` (Normal sessions). */
  lookupInitiator(iqn: string): InitiatorAccess | undefined;
  /** CHAP required for a Discovery session of this initiator, or null for none. */
  discoveryAuth(iqn: string): ChapCredentials | null;
  /** A fresh non-zero TSIH, unique among live sessions of this target. */
  allocateTsih(): number;
  /**
   * For a login with a non-zero TSIH (a connection joining or restarting an existing session): whether
   * that session exists for this initiator name and ISID. Absent: no such sessions (status 0x020a).
   */
  sessionExists?(initiatorName: string, isid: Buffer, tsih: number): boolean;
}

export interface LoginOptions {
  /** Our limits and preferences; defaults {@link DEFAULT_TARGET_PARAMS}. */
  params?: Partial<TargetParams>;
  /** CHAP_A values we accept (default all implemented). */
  chapAlgorithms?: readonly number[];
  /** Randomness for CHAP; replaceable for reproducible tests. */
  random?: (n: number) => Buffer;
  /** MaxCmdSN = ExpCmdSN + cmdWindow − 1 in login responses; default 128. */
  cmdWindow?: number;
  /** StatSN of the first response; default the initiator's ExpStatSN from its first request. */
  initialStatSN?: number;
  /** Refuse Discovery sessions (status 0x0209) when false. Default true. */
  allowDiscovery?: boolean;
  /** Bound on one (possibly continued) login text; default 64 KiB. */
  maxTextLength?: number;
}

export type AuthOutcome = 'None' | 'CHAP' | 'CHAP-mutual';

/** Everything the session layer needs once login succeeds. */
export interface LoginResult {
  sessionType: SessionType;
  initiatorName: string;
  initiatorAlias?: string;
  /** The target logged in to (Normal sessions). */
  targetName?: string;
  isid: Buffer;
  tsih: number;
  /**
   * True when the initiator asked for a new session (TSIH 0): the caller must reinstate (close) any live
   * session with the same initiator name and ISID (RFC 7143 §6.3.5).
   */
  newSession: boolean;
  cid: number;
  params: NegotiatedParams;
  /** Digests for every PDU after the final login response, both directions. */
  digests: { header: boolean; data: boolean };
  auth: AuthOutcome;
  /** StatSN carried by the final login response; the next response carries statSN + 1. */
  statSN: number;
  /** The CmdSN the initiator's first command will carry. */
  expCmdSN: number;
}

/** What one Login Request produced: always a response to send, and how the login stands. */
export type LoginStep =
  | { status: 'continue'; response: LoginResponsePdu }
  | { status: 'complete'; response: LoginResponsePdu; result: LoginResult }
  /** Send the response, then close the connection (RFC 7143 §11.13.5: any non-zero class ends it). */
  | { status: 'failed'; response: LoginResponsePdu; loginStatus: number; reason: string };

/** Login PDUs carry at most 8192 bytes of text before MaxRecvDataSegmentLength takes effect. */
const LOGIN_SEGMENT = 8192;

const IDENTITY_KEYS = new Set(['InitiatorName', 'TargetName', 'SessionType', 'InitiatorAlias']);
/** Keys only a target may send, or only meaningful in full feature phase: answered Irrelevant in a login. */
const IRRELEVANT_IN_LOGIN = new Set(['TargetAlias', 'TargetAddress', 'SendTargets']);

class LoginFailure extends Error {
  constructor(
    readonly loginStatus: number,
    reason: string,
  ) {
    super(reason);
  }
}

/** Pending tail of a response too long for one PDU, sent as the initiator asks for more. */
interface Continuation {
  segments: Buffer[];
  /** Builds the last segment's response to request `req` (transit decisions are applied only there). */
  finish: (req: LoginRequestPdu, data: Buffer) => LoginStep;
}

/** Target side of one connection's login. Call {@link handle} with each Login Request. */
export class LoginHandler {
  private readonly cfg: TargetParams;
  private readonly cmdWindow: number;
  private readonly assembler: TextAssembler;
  private state: 'active' | 'complete' | 'failed' = 'active';
  private first = true;
  private stage: number = Stage.Security;
  private statSN = 0;
  private isid = Buffer.alloc(6);
  private tsih = 0;
  private cid = 0;
  private sessionType: SessionType = 'Normal';
  private initiatorName = '';
  private initiatorAlias: string | undefined;
  private targetName: string | undefined;
  private identified = false;
  private authRequired = false;
  private creds: ChapCredentials | null = null;
  private authMethod: 'None' | 'CHAP' | undefined;
  private chap: ChapTargetAuth | undefined;
  private authDone = false;
  private mutual = false;
  private negotiator: Negotiator | undefined;
  private tpgtSent = false;
  private aliasSent = false;
  private continuation: Continuation | undefined;

  constructor(
    private readonly policy: LoginPolicy,
    private readonly opts: LoginOptions = {},
  ) {
    this.cfg = { ...DEFAULT_TARGET_PARAMS, ...opts.params };
    validateTargetParams(this.cfg);
    this.cmdWindow = opts.cmdWindow ?? 128;
    this.assembler = new TextAssembler(opts.maxTextLength ?? 65536);
  }

  /** Processes one Login Request and returns the response to send, and whether login ended. */
  handle(req: LoginRequestPdu): LoginStep {
    if (this.state !== 'active') {
      return this.failure(req, LoginStatus.InvalidDuringLogin, `login already ${this.state}`);
    }
    try {
      return this.process(req);
    } catch (err) {
      if (err instanceof LoginFailure) return this.failure(req, err.loginStatus, err.message);
      // E.g. a continued text beyond the reassembly bound: the initiator's fault, not ours.
      if (err instanceof TextFormatError) return this.failure(req, LoginStatus.InitiatorError, err.message);
      return this.failure(req, LoginStatus.TargetError, `internal error: ${(err as Error).message}`);
    }
  }

  private process(req: LoginRequestPdu): LoginStep {
    const data = req.data ?? Buffer.alloc(0);
    this.checkHeader(req);

    if (this.continuation) {
      if (data.length > 0 || req.continue) {
        throw new LoginFailure(LoginStatus.InitiatorError, 'text sent while our response was continuing');
      }
      return this.nextSegment(req);
    }

    const text = this.assembler.push(data, req.continue === true);
    if (text === undefined) return this.respond(req, { transit: false, nsg: 0, data: Buffer.alloc(0) });

    let pairs: KeyValue[];
    try {
      pairs = parseText(text);
    } catch (err) {
      if (err instanceof TextFormatError) throw new LoginFailure(LoginStatus.InitiatorError, err.message);
      throw err;
    }

    if (!this.identified) this.identify(req, pairs);
    else this.checkIdentity(pairs);

    const responses: KeyValue[] = [];
    if (this.sessionType === 'Normal' && !this.tpgtSent) {
      responses.push(['TargetPortalGroupTag', String(this.policy.portalGroupTag)]);
      this.tpgtSent = true;
    }

    const security: KeyValue[] = [];
    const operational: KeyValue[] = [];
    for (const kv of pairs) {
      const [key] = kv;
      // TargetPortalGroupTag is ours to declare; an initiator echoing one gets ours, sent once, not a second answer.
      if (IDENTITY_KEYS.has(key) || key === 'TargetPortalGroupTag') continue;
      if (IRRELEVANT_IN_LOGIN.has(key)) operational.push(kv);
      else if (key === 'AuthMethod' || isChapKey(key)) security.push(kv);
      else operational.push(kv);
    }

    if (security.length > 0) {
      if (this.stage === Stage.Security) responses.push(...this.securityKeys(security));
      else {
        for (const [key] of security) {
          if (key !== 'AuthMethod') {
            throw new LoginFailure(LoginStatus.InitiatorError, `${key} outside the security stage`);
          }
          responses.push([key, 'Irrelevant']);
        }
      }
    }

    const neg = this.negotiator!;
    const irrelevant = operational.filter(([k]) => IRRELEVANT_IN_LOGIN.has(k));
    const negotiable = operational.filter(([k]) => !IRRELEVANT_IN_LOGIN.has(k));
    for (const [k] of irrelevant) responses.push([k, 'Irrelevant']);
    const outcome = neg.negotiate(negotiable);
    if (outcome.failure) throw new LoginFailure(LoginStatus.InitiatorError, outcome.failure);
    responses.push(...outcome.responses);

    // Transit decision.
    let transit = req.transit === true;
    if (transit && this.stage === Stage.Security && !this.authDone) {
      if (this.authMethod === undefined && !this.authRequired) {
        this.authMethod = 'None';
        this.authDone = true;
      } else if (this.authMethod === undefined) {
        throw new LoginFailure(LoginStatus.AuthenticationFailure, 'initiator tried to skip required CHAP');
      } else {
        transit = false;
      }
    }
    const toFull = transit && req.nsg === Stage.FullFeature;
    if (this.stage === Stage.Operational || toFull) responses.push(...this.declarations());
    if (toFull) {
      if (!neg.awaitingAnswers) {
        const offers = neg.offersNeeded();
        responses.push(...offers);
      }
      if (neg.awaitingAnswers) transit = false;
    }

    const nsg = transit ? req.nsg : 0;
    const out = encodeText(responses);
    // Within the login the initiator's declaration applies once made, but never beyond the 8192-byte login bound.
    const segments = splitText(out, Math.min(LOGIN_SEGMENT, neg.params.initiatorMaxRecvDataSegmentLength));
    if (segments.length > 1) {
      this.continuation = {
        segments: segments.slice(1),
        finish: (current, last) => this.finalResponse(current, transit, nsg, last),
      };
      return this.respond(req, { transit: false, nsg: 0, data: segments[0]!, continue: true });
    }
    return this.finalResponse(req, transit, nsg, out);
  }

  private nextSegment(req: LoginRequestPdu): LoginStep {
    const c = this.continuation!;
    const seg = c.segments.shift()!;
    if (c.segments.length > 0)
      return this.respond(req, { transit: false, nsg: 0, data: seg, continue: true });
    this.continuation = undefined;
    return c.finish(req, seg);
  }

  /** The response that ends a request's exchange: applies the stage transition and completes the login. */
  private finalResponse(req: LoginRequestPdu, transit: boolean, nsg: number, data: Buffer): LoginStep {
    const csg = this.stage;
    if (!transit) return this.respond(req, { transit: false, nsg: 0, data });
    this.stage = nsg;
    if (nsg !== Stage.FullFeature) return this.respond(req, { transit: true, nsg, data, csg });

    const newSession = this.tsih === 0;
    if (newSession) {
      const tsih = this.policy.allocateTsih();
      if (!Number.isInteger(tsih) || tsih <= 0 || tsih > 0xffff) {
        throw new LoginFailure(LoginStatus.OutOfResources, 'no TSIH available');
      }
      this.tsih = tsih;
    }
    const step = this.respond(req, { transit: true, nsg, data, csg });
    this.state = 'complete';
    const params = { ...this.negotiator!.params };
    const result: LoginResult = {
      sessionType: this.sessionType,
      initiatorName: this.initiatorName,
      isid: Buffer.from(this.isid),
      tsih: this.tsih,
      newSession,
      cid: this.cid,
      params,
      digests: { header: params.headerDigest === 'CRC32C', data: params.dataDigest === 'CRC32C' },
      auth: this.authMethod === 'CHAP' ? (this.mutual ? 'CHAP-mutual' : 'CHAP') : 'None',
      statSN: step.response.statSN,
      expCmdSN: req.cmdSN >>> 0,
    };
    if (this.initiatorAlias !== undefined) result.initiatorAlias = this.initiatorAlias;
    if (this.targetName !== undefined) result.targetName = this.targetName;
    return { status: 'complete', response: step.response, result };
  }

  private declarations(): KeyValue[] {
    const out = this.negotiator!.declarations();
    if (!this.aliasSent && this.sessionType === 'Normal' && this.policy.targetAlias) {
      out.push(['TargetAlias', this.policy.targetAlias]);
      this.aliasSent = true;
    }
    return out;
  }

  /** Header checks: version, stage numbering, session identifiers constant across the login. */
  private checkHeader(req: LoginRequestPdu): void {
    if (req.transit && req.continue) {
      throw new LoginFailure(LoginStatus.InitiatorError, 'T and C bits both set');
    }
    if (this.first) {
      this.first = false;
      this.statSN = (this.opts.initialStatSN ?? req.expStatSN) >>> 0;
      this.isid = Buffer.from(req.isid);
      this.tsih = req.tsih;
      this.cid = req.cid;
      if (req.versionMin > 0) {
        throw new LoginFailure(LoginStatus.UnsupportedVersion, `version ${req.versionMin} not supported`);
      }
      if (req.csg !== Stage.Security && req.csg !== Stage.Operational) {
        throw new LoginFailure(LoginStatus.InitiatorError, `login cannot start in stage ${req.csg}`);
      }
      this.stage = req.csg;
    } else {
      if (!this.isid.equals(req.isid) || this.tsih !== req.tsih || this.cid !== req.cid) {
        throw new LoginFailure(LoginStatus.InitiatorError, 'ISID, TSIH or CID changed during login');
      }
      if (req.csg !== this.stage) {
        throw new LoginFailure(
          LoginStatus.InitiatorError,
          `CSG ${req.csg} but the login is in stage ${this.stage}`,
        );
      }
    }
    if (req.transit && (req.nsg === 2 || req.nsg <= req.csg)) {
      throw new LoginFailure(
        LoginStatus.InitiatorError,
        `invalid transition from stage ${req.csg} to ${req.nsg}`,
      );
    }
  }

  /** First complete text: who is logging in, to what, and what authentication that requires. */
  private identify(req: LoginRequestPdu, pairs: readonly KeyValue[]): void {
    const get = (k: string) => pairs.find(([key]) => key === k)?.[1];
    const initiatorName = get('InitiatorName');
    if (!initiatorName) throw new LoginFailure(LoginStatus.MissingParameter, 'InitiatorName missing');
    const sessionType = get('SessionType') ?? 'Normal';
    if (sessionType !== 'Normal' && sessionType !== 'Discovery') {
      throw new LoginFailure(LoginStatus.SessionTypeNotSupported, `unknown SessionType ${sessionType}`);
    }
    if (sessionType === 'Discovery' && this.opts.allowDiscovery === false) {
      throw new LoginFailure(LoginStatus.SessionTypeNotSupported, 'discovery sessions are disabled');
    }
    this.initiatorName = initiatorName;
    this.sessionType = sessionType;
    this.initiatorAlias = get('InitiatorAlias');

    if (sessionType === 'Normal') {
      const targetName = get('TargetName');
      if (!targetName) throw new LoginFailure(LoginStatus.MissingParameter, 'TargetName missing');
      if (targetName.toLowerCase() !== this.policy.targetName.toLowerCase()) {
        throw new LoginFailure(LoginStatus.TargetNotFound, `no target ${targetName}`);
      }
      this.targetName = this.policy.targetName;
      const access = this.policy.lookupInitiator(initiatorName);
      if (!access?.allowed) {
        throw new LoginFailure(
          LoginStatus.AuthorizationFailure,
          `${initiatorName} has no access to ${targetName}`,
        );
      }
      this.creds = access.auth;
    } else {
      this.creds = this.policy.discoveryAuth(initiatorName);
    }
    this.authRequired = !!(this.creds?.in_user && this.creds.in_pass);

    if (req.tsih !== 0 && !this.policy.sessionExists?.(initiatorName, this.isid, req.tsih)) {
      throw new LoginFailure(LoginStatus.SessionDoesNotExist, `no session with TSIH ${req.tsih}`);
    }
    if (this.stage === Stage.Operational) {
      if (this.authRequired) {
        throw new LoginFailure(
          LoginStatus.AuthenticationFailure,
          'CHAP required but the security stage was skipped',
        );
      }
      this.authMethod = 'None';
      this.authDone = true;
    }
    this.negotiator = new Negotiator(this.cfg, this.sessionType);
    this.identified = true;
  }

  /** Later texts may repeat the identity keys (libiscsi does) but not change them. */
  private checkIdentity(pairs: readonly KeyValue[]): void {
    for (const [k, v] of pairs) {
      const same =
        k === 'InitiatorName'
          ? v === this.initiatorName
          : k === 'SessionType'
            ? v === this.sessionType
            : k === 'TargetName'
              ? this.sessionType === 'Discovery' || v.toLowerCase() === this.targetName?.toLowerCase()
              : true;
      if (!same) throw new LoginFailure(LoginStatus.InitiatorError, `${k} changed during login`);
    }
  }

  /** AuthMethod selection and the CHAP exchange. */
  private securityKeys(keys: readonly KeyValue[]): KeyValue[] {
    const out: KeyValue[] = [];
    const chapKeys = new Map<string, string>();
    for (const [key, value] of keys) {
      if (key === 'AuthMethod') {
        if (this.authMethod !== undefined) {
          // A repeated offer is answered again, as long as it still allows what was agreed and CHAP has not begun.
          if (value.split(',').includes(this.authMethod) && !this.chap?.started) {
            out.push(['AuthMethod', this.authMethod]);
            continue;
          }
          throw new LoginFailure(LoginStatus.InitiatorError, 'AuthMethod renegotiated');
        }
        const supported = this.authRequired ? 'CHAP' : 'None';
        if (!value.split(',').includes(supported)) {
          throw new LoginFailure(
            LoginStatus.AuthenticationFailure,
            this.authRequired
              ? `CHAP required, initiator offered AuthMethod=${value}`
              : `AuthMethod=${value} not available`,
          );
        }
        out.push(['AuthMethod', supported]);
        this.authMethod = supported;
        if (supported === 'None') this.authDone = true;
        else {
          const c = this.creds!;
          const mutual = c.out_user && c.out_pass ? { targetUser: c.out_user, targetSecret: c.out_pass } : {};
          this.chap = new ChapTargetAuth(
            { user: c.in_user!, secret: c.in_pass!, ...mutual },
            { algorithms: this.opts.chapAlgorithms, random: this.opts.random },
          );
        }
      } else {
        chapKeys.set(key, value);
      }
    }
    if (chapKeys.size > 0) {
      if (this.authMethod !== 'CHAP' || !this.chap) {
        throw new LoginFailure(LoginStatus.AuthenticationFailure, 'CHAP keys without AuthMethod=CHAP');
      }
      const step = this.chap.step(chapKeys);
      if (step.status === 'failed') throw new LoginFailure(LoginStatus.AuthenticationFailure, step.reason);
      out.push(...step.responses);
      if (step.status === 'done') {
        this.authDone = true;
        this.mutual = step.mutual;
      }
    }
    return out;
  }

  private respond(
    req: LoginRequestPdu,
    r: { transit: boolean; nsg: number; data: Buffer; continue?: boolean; csg?: number },
  ): { status: 'continue'; response: LoginResponsePdu } {
    const statSN = this.statSN;
    this.statSN = (this.statSN + 1) >>> 0;
    return {
      status: 'continue',
      response: {
        opcode: 0x23,
        transit: r.transit,
        continue: r.continue ?? false,
        csg: r.csg ?? this.stage,
        nsg: r.nsg,
        versionMax: 0,
        versionActive: 0,
        isid: Buffer.from(this.isid),
        // The TSIH we assigned goes out only in the final response of a new session (RFC 7143 §11.13.4).
        tsih: this.tsih,
        itt: req.itt,
        statSN,
        expCmdSN: req.cmdSN >>> 0,
        maxCmdSN: (req.cmdSN + this.cmdWindow - 1) >>> 0,
        statusClass: 0,
        statusDetail: 0,
        data: r.data,
      },
    };
  }

  private failure(req: LoginRequestPdu, loginStatus: number, reason: string): LoginStep {
    this.state = 'failed';
    if (this.first) {
      this.first = false;
      this.statSN = (this.opts.initialStatSN ?? req.expStatSN) >>> 0;
    }
    const { response } = this.respond(req, {
      transit: false,
      nsg: 0,
      data: Buffer.alloc(0),
      csg: req.csg & 3,
    });
    response.isid = Buffer.from(req.isid);
    response.tsih = req.tsih;
    response.statusClass = loginStatus >> 8;
    response.statusDetail = loginStatus & 0xff;
    return { status: 'failed', response, loginStatus, reason };
  }
}
