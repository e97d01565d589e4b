import type { ChapCredentials } from '../../../src/exports/types.js';
import type { InitiatorAccess, KeyValue, LoginPolicy, LoginStep } from '../../../src/iscsi/login/index.js';
import { encodeText, parseText } from '../../../src/iscsi/login/index.js';
import type { LoginRequestPdu } from '../../../src/iscsi/pdu/index.js';

export const TARGET = 'iqn.2003-01.org.example:storage';
export const INIT = 'iqn.2004-10.com.example:host1';
export const ISID = Buffer.from('400001370000', 'hex');

/** The operational offer libiscsi 1.19 sends (lib/login.c order), plus the iSER keys it adds. */
export const LIBISCSI_OFFER: KeyValue[] = [
  ['HeaderDigest', 'None,CRC32C'],
  ['DataDigest', 'None'],
  ['InitialR2T', 'No'],
  ['ImmediateData', 'Yes'],
  ['MaxBurstLength', '262144'],
  ['FirstBurstLength', '262144'],
  ['DefaultTime2Wait', '2'],
  ['DefaultTime2Retain', '0'],
  ['MaxOutstandingR2T', '1'],
  ['ErrorRecoveryLevel', '0'],
  ['IFMarker', 'No'],
  ['OFMarker', 'No'],
  ['MaxConnections', '1'],
  ['MaxRecvDataSegmentLength', '262144'],
  ['DataPDUInOrder', 'Yes'],
  ['DataSequenceInOrder', 'Yes'],
  ['RDMAExtensions', 'Yes'],
  ['InitiatorRecvDataSegmentLength', '262144'],
  ['TargetRecvDataSegmentLength', '262144'],
];

/** open-iscsi's operational offer with etc/iscsid.conf defaults. */
export const OPEN_ISCSI_OFFER: KeyValue[] = [
  ['HeaderDigest', 'None'],
  ['DataDigest', 'None'],
  ['DefaultTime2Wait', '2'],
  ['DefaultTime2Retain', '0'],
  ['IFMarker', 'No'],
  ['OFMarker', 'No'],
  ['ErrorRecoveryLevel', '0'],
  ['InitialR2T', 'No'],
  ['ImmediateData', 'Yes'],
  ['MaxBurstLength', '16776192'],
  ['FirstBurstLength', '262144'],
  ['MaxOutstandingR2T', '1'],
  ['MaxConnections', '1'],
  ['DataPDUInOrder', 'Yes'],
  ['DataSequenceInOrder', 'Yes'],
  ['MaxRecvDataSegmentLength', '262144'],
];

export interface TestPolicy extends LoginPolicy {
  tsihs: number[];
}

/** A policy with a map of initiators (IQN → access) and optional discovery CHAP. */
export function makePolicy(
  initiators: Record<string, InitiatorAccess> = { [INIT]: { allowed: true, auth: null } },
  discovery: ChapCredentials | null = null,
): TestPolicy {
  let next = 0x100;
  const tsihs: number[] = [];
  return {
    targetName: TARGET,
    portalGroupTag: 1,
    tsihs,
    lookupInitiator: (iqn) => initiators[iqn],
    discoveryAuth: () => discovery,
    allocateTsih: () => {
      tsihs.push(next);
      return next++;
    },
  };
}

export function chap(inUser: string, inPass: string, outUser?: string, outPass?: string): ChapCredentials {
  return { in_user: inUser, in_pass: inPass, out_user: outUser ?? null, out_pass: outPass ?? null };
}

/** Drives a LoginHandler like an initiator would, keeping ISID/CID/CmdSN/ExpStatSN consistent. */
export class FakeInitiator {
  cmdSN = 0x1000;
  expStatSN = 0x77;
  itt = 0x10;
  tsih = 0;

  constructor(private readonly handle: (req: LoginRequestPdu) => LoginStep) {}

  send(
    csg: number,
    nsg: number,
    transit: boolean,
    pairs: KeyValue[] | Buffer,
    extra: Partial<LoginRequestPdu> = {},
  ): { step: LoginStep; keys: KeyValue[]; text: string } {
    const data = Buffer.isBuffer(pairs) ? pairs : encodeText(pairs);
    const step = this.handle({
      opcode: 0x03,
      immediate: true,
      transit,
      continue: false,
      csg,
      nsg,
      versionMax: 0,
      versionMin: 0,
      isid: ISID,
      tsih: this.tsih,
      itt: this.itt,
      cid: 1,
      cmdSN: this.cmdSN,
      expStatSN: this.expStatSN,
      data,
      ...extra,
    });
    this.expStatSN = (step.response.statSN + 1) >>> 0;
    const text = step.response.data ?? Buffer.alloc(0);
    // A continued response may end inside a pair: only whole texts are parsed.
    return { step, keys: step.response.continue ? [] : parseText(text), text: text.toString('utf8') };
  }
}

/** Keys as a plain object, for compact assertions. */
export function asObject(keys: KeyValue[]): Record<string, string> {
  return Object.fromEntries(keys);
}
