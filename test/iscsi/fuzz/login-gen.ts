/**
 * A reactive login fuzzer: plays one login conversation (security stage with CHAP or not, operational
 * stage, full feature transition), reading each Login Response to answer real CHAP challenges, and deviates
 * from the good path at random: odd identities, wrong or odd CHAP values, reflected challenges, skipped or
 * repeated stages, wrong transitions, text split with the C bit (sometimes forever), garbage text, changing
 * ISID/TSIH/CID, versions. It knows when it has proven an identity, so callers can check the ACL held.
 */
import { encodeText, type KeyValue, parseText } from '../../../src/iscsi/login/index.js';
import type { LoginRequestPdu, LoginResponsePdu } from '../../../src/iscsi/pdu/index.js';
import { chapAnswer, garbageText, oddValue, STANDARD_OFFER } from './corpus.js';
import type { Rng } from './prng.js';

export interface LoginIdentities {
  target: string;
  /** Allowed without CHAP. */
  open: string;
  /** Allowed with CHAP (in_user/in_pass; out_user/out_pass for mutual). */
  chap: string;
  chapUser: string;
  chapSecret: string;
  targetUser: string;
  targetSecret: string;
}

type Plan =
  | 'good'
  | 'wrong-secret'
  | 'wrong-user'
  | 'no-chap'
  | 'odd-chap'
  | 'reflect'
  | 'mutual'
  | 'mutual-bad';

export type LoginRequest = Omit<LoginRequestPdu, 'opcode'> & { data: Buffer };

/** What the script knows once the conversation ends. */
export interface LoginVerdict {
  name: string;
  sessionType: string;
  targetName: string | undefined;
  /** The script sent the correct CHAP_N and CHAP_R for `chap` in this login. */
  provedChap: boolean;
}

export class LoginScript {
  readonly name: string;
  readonly sessionType: string;
  readonly targetName: string | undefined;
  readonly plan: Plan;
  provedChap = false;
  steps = 0;
  /** Mutual CHAP answer the target must send, once we sent our challenge. */
  expectMutual: { alg: number; id: number; challenge: Buffer } | undefined;
  private stage = 0;
  private sentAuth = false;
  private sentChapA = false;
  private pendingText: Buffer | undefined;
  private isid: Buffer;
  private tsih = 0;
  private cid: number;
  private itt: number;
  private cmdSN: number;
  private expStatSN = 0;
  private readonly deviate: number;

  constructor(
    private readonly rng: Rng,
    private readonly ids: LoginIdentities,
    o: { deviate?: number; isid?: Buffer } = {},
  ) {
    this.deviate = o.deviate ?? 0.15;
    this.name = rng.weighted<string>([
      [4, ids.open],
      [4, ids.chap],
      [1, ids.chap.toUpperCase()],
      [1, ids.open.toUpperCase()],
      [2, `iqn.2024-01.test.fuzz:stranger${rng.int(5)}`],
      [1, ''],
      [1, `${ids.open}\u0000x`],
      [1, 'x'.repeat(rng.range(200, 300))],
      [1, ids.target],
    ]);
    this.sessionType = rng.weighted<string>([
      [8, 'Normal'],
      [3, 'Discovery'],
      [1, 'Bogus'],
      [1, ''],
    ]);
    this.targetName = rng.weighted<string | undefined>([
      [8, ids.target],
      [1, ids.target.toUpperCase()],
      [1, `${ids.target}x`],
      [1, undefined],
    ]);
    this.plan = rng.pick<Plan>([
      'good',
      'good',
      'mutual',
      'wrong-secret',
      'wrong-user',
      'no-chap',
      'odd-chap',
      'reflect',
      'mutual-bad',
    ]);
    this.stage = rng.chance(0.6) ? 0 : 1;
    this.isid = o.isid ?? Buffer.from([0x40, 0, 0, 0, rng.int(256), rng.int(256)]);
    this.cid = rng.chance(0.9) ? 1 : rng.int(0x10000);
    this.itt = rng.u32();
    this.cmdSN = rng.chance(0.9) ? 1 : rng.u32();
    if (rng.chance(0.05)) this.tsih = rng.range(1, 5);
  }

  verdict(): LoginVerdict {
    return {
      name: this.name,
      sessionType: this.sessionType,
      targetName: this.targetName,
      provedChap: this.provedChap,
    };
  }

  private identity(): KeyValue[] {
    const keys: KeyValue[] = [];
    if (this.name !== '' || this.rng.chance(0.5)) keys.push(['InitiatorName', this.name]);
    if (this.sessionType !== '') keys.push(['SessionType', this.sessionType]);
    if (this.targetName !== undefined && (this.sessionType !== 'Discovery' || this.rng.chance(0.2))) {
      keys.push(['TargetName', this.targetName]);
    }
    return keys;
  }

  private request(
    pairs: KeyValue[] | Buffer,
    r: { csg: number; nsg: number; transit: boolean },
  ): LoginRequest {
    this.steps++;
    let data = Buffer.isBuffer(pairs) ? pairs : encodeText(pairs);
    let cont = false;
    const rng = this.rng;
    // Continuation: send part of the text now, the rest next time (or never).
    if (this.pendingText === undefined && data.length > 1 && rng.chance(this.deviate / 2)) {
      const cut = rng.range(1, data.length - 1);
      this.pendingText = data.subarray(cut);
      data = data.subarray(0, cut);
      cont = true;
    } else if (this.pendingText !== undefined) {
      data = Buffer.concat([this.pendingText, data]);
      this.pendingText = undefined;
    }
    const req: LoginRequest = {
      immediate: true,
      transit: cont ? false : r.transit,
      continue: cont,
      csg: r.csg,
      nsg: r.nsg,
      versionMax: 0,
      versionMin: 0,
      isid: this.isid,
      tsih: this.tsih,
      itt: this.itt,
      cid: this.cid,
      cmdSN: this.cmdSN,
      expStatSN: this.expStatSN,
      data,
    };
    if (rng.chance(this.deviate / 3)) {
      switch (rng.int(9)) {
        case 0:
          req.versionMin = rng.int(256);
          break;
        case 1:
          req.csg = rng.int(4);
          break;
        case 2:
          req.nsg = rng.int(4);
          break;
        case 3:
          req.transit = true;
          req.continue = true;
          break;
        case 4:
          req.isid = Buffer.from([0x40, 0, 0, 0, 0, rng.int(256)]);
          break;
        case 5:
          req.tsih = rng.int(0x10000);
          break;
        case 6:
          req.cid = rng.int(0x10000);
          break;
        case 7:
          req.itt = rng.u32();
          break;
        default:
          req.versionMax = rng.int(256);
      }
    }
    return req;
  }

  /** The first request. */
  first(): LoginRequest {
    return this.step(undefined);
  }

  /** The request answering `rsp` (the previous response). */
  next(rsp: LoginResponsePdu): LoginRequest {
    this.expStatSN = (rsp.statSN + 1) >>> 0;
    if (rsp.tsih !== 0 && rsp.transit && rsp.nsg === 3) this.tsih = rsp.tsih;
    return this.step(rsp);
  }

  private step(rsp: LoginResponsePdu | undefined): LoginRequest {
    const rng = this.rng;
    let keys: KeyValue[] = [];
    try {
      keys = rsp && !rsp.continue && rsp.data ? parseText(rsp.data) : [];
    } catch {
      keys = [];
    }
    const got = (k: string) => keys.find(([key]) => key === k)?.[1];
    if (rsp?.transit && rsp.nsg !== this.stage) this.stage = rsp.nsg;
    if (rsp?.continue) {
      // The target is continuing its text: ask for the rest with an empty request.
      return this.request(Buffer.alloc(0), { csg: this.stage, nsg: 0, transit: false });
    }

    // Now and then: something else entirely.
    if (rng.chance(this.deviate)) {
      const what = rng.int(6);
      if (what === 0)
        return this.request(garbageText(rng), { csg: rng.int(4), nsg: rng.int(4), transit: rng.chance(0.5) });
      if (what === 1) {
        const pairs: KeyValue[] = [...this.identity()];
        for (let i = rng.range(1, 8); i > 0; i--)
          pairs.push([
            rng.pick([
              'CHAP_A',
              'CHAP_N',
              'CHAP_R',
              'CHAP_I',
              'CHAP_C',
              'AuthMethod',
              'MaxRecvDataSegmentLength',
              'HeaderDigest',
              'FirstBurstLength',
              'MaxBurstLength',
              'SendTargets',
            ]),
            oddValue(rng),
          ]);
        return this.request(pairs, { csg: this.stage, nsg: rng.pick([1, 3]), transit: rng.chance(0.5) });
      }
      if (what === 2) return this.request(Buffer.alloc(0), { csg: this.stage, nsg: 0, transit: false });
      if (what === 3) {
        // A huge text: many long pairs (beyond the 64 KiB reassembly bound when continued).
        const big: KeyValue[] = [];
        for (let i = 0; i < rng.range(1, 40); i++) big.push([`X-pad${i}`, 'y'.repeat(rng.range(100, 8000))]);
        return this.request(big, { csg: this.stage, nsg: 3, transit: false });
      }
      if (what === 4) return this.request(this.identity(), { csg: this.stage, nsg: 3, transit: true });
      return this.request([...STANDARD_OFFER, ...STANDARD_OFFER], { csg: 1, nsg: 3, transit: true });
    }

    if (this.stage === 0) {
      if (!this.sentAuth || !rsp) {
        this.sentAuth = true;
        const method = rng.weighted<string>([
          [6, this.plan === 'no-chap' ? 'None' : 'CHAP,None'],
          [2, 'CHAP'],
          [1, 'None'],
          [1, oddValue(rng)],
        ]);
        const pairs: KeyValue[] = [...this.identity(), ['AuthMethod', method]];
        if (rng.chance(0.3)) pairs.push(...STANDARD_OFFER.slice(0, rng.int(4)));
        return this.request(pairs, { csg: 0, nsg: 1, transit: true });
      }
      const method = got('AuthMethod');
      if (method === 'CHAP' && !this.sentChapA) {
        this.sentChapA = true;
        const alg = this.plan === 'odd-chap' ? oddValue(rng) : rng.pick(['5', '7,5', '5,6,7,8', '8']);
        return this.request([['CHAP_A', alg]], { csg: 0, nsg: 1, transit: false });
      }
      const a = Number(got('CHAP_A'));
      const i = Number(got('CHAP_I'));
      const c = got('CHAP_C');
      if (c !== undefined && Number.isInteger(i)) {
        const challenge = Buffer.from(c.slice(2), 'hex');
        const user = this.plan === 'wrong-user' ? 'nobody' : this.ids.chapUser;
        const secret =
          this.plan === 'wrong-secret' || this.plan === 'mutual-bad' ? 'not-the-secret' : this.ids.chapSecret;
        let r: string;
        try {
          r = chapAnswer(a, i, secret, challenge);
        } catch {
          r = '0x00';
        }
        if (this.plan === 'odd-chap') r = oddValue(rng);
        const pairs: KeyValue[] = [
          ['CHAP_N', user],
          ['CHAP_R', r],
        ];
        if (user === this.ids.chapUser && secret === this.ids.chapSecret && this.plan !== 'odd-chap') {
          this.provedChap = true;
        }
        if (this.plan === 'mutual' || this.plan === 'mutual-bad' || this.plan === 'reflect') {
          const id = rng.int(256);
          const mine = this.plan === 'reflect' ? challenge : rng.bytes(16);
          pairs.push(['CHAP_I', String(id)], ['CHAP_C', `0x${mine.toString('hex')}`]);
          this.expectMutual = { alg: a, id, challenge: mine };
        }
        return this.request(pairs, { csg: 0, nsg: 1, transit: true });
      }
      // Nothing to answer: try to move on (maybe skipping required CHAP).
      return this.request(rng.chance(0.5) ? [] : this.identity(), {
        csg: 0,
        nsg: rng.pick([1, 3]),
        transit: true,
      });
    }
    // Operational stage.
    const offer: KeyValue[] = [...STANDARD_OFFER];
    if (rng.chance(0.3)) {
      const j = rng.int(offer.length);
      offer[j] = [offer[j]![0], oddValue(rng)];
    }
    if (this.steps === 0 || rng.chance(0.2)) offer.unshift(...this.identity());
    if (this.sessionType === 'Discovery')
      offer.splice(0, offer.length, ...this.identity(), [
        'MaxRecvDataSegmentLength',
        rng.pick(['8192', '512', '65536']),
      ]);
    return this.request(offer, { csg: 1, nsg: 3, transit: true });
  }
}
