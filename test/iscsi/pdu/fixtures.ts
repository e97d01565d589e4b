import { encodeText, type KeyValue } from '../../../src/iscsi/login/index.js';
import { encodeLoginRequest, type Pdu } from '../../../src/iscsi/pdu/index.js';

const bytes = (n: number, seed = 1) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

/** One PDU of every opcode, with distinctive field values and data lengths not all multiples of 4. */
export function samplePdus(): Pdu[] {
  const lun = 0x0001_0000_0000_0000n;
  return [
    {
      opcode: 0x00,
      immediate: true,
      lun,
      itt: 0x11,
      ttt: 0xffffffff,
      cmdSN: 7,
      expStatSN: 9,
      data: bytes(5),
    },
    {
      opcode: 0x01,
      immediate: false,
      final: true,
      read: false,
      write: true,
      attr: 1,
      lun,
      itt: 0xdeadbeef,
      expectedDataTransferLength: 4096,
      cmdSN: 0xfffffffe,
      expStatSN: 3,
      cdb: Buffer.from('2a000000000100000800000000000000', 'hex'),
      data: bytes(4096, 2),
    },
    {
      opcode: 0x01,
      final: true,
      read: true,
      attr: 2,
      lun: 0n,
      itt: 2,
      expectedDataTransferLength: 512,
      cmdSN: 1,
      expStatSN: 1,
      // 32-byte CDB: goes into an Extended CDB AHS.
      cdb: bytes(32, 9),
      bidiReadExpectedLength: 777,
    },
    {
      opcode: 0x02,
      immediate: true,
      function: 1,
      lun,
      itt: 3,
      referencedTaskTag: 0xdeadbeef,
      cmdSN: 10,
      expStatSN: 11,
      refCmdSN: 9,
      expDataSN: 0,
    },
    {
      opcode: 0x03,
      transit: true,
      continue: false,
      csg: 1,
      nsg: 3,
      versionMax: 0,
      versionMin: 0,
      isid: Buffer.from('400001370000', 'hex'),
      tsih: 0,
      itt: 0x1000,
      cid: 1,
      cmdSN: 0x12345678,
      expStatSN: 0,
      data: Buffer.from('InitiatorName=iqn.x\0SessionType=Normal\0'),
    },
    {
      opcode: 0x04,
      final: true,
      continue: false,
      lun: 0n,
      itt: 5,
      ttt: 0xffffffff,
      cmdSN: 20,
      expStatSN: 21,
      data: Buffer.from('SendTargets=All\0'),
    },
    {
      opcode: 0x05,
      final: true,
      lun,
      itt: 0xdeadbeef,
      ttt: 0x99,
      expStatSN: 4,
      dataSN: 2,
      bufferOffset: 8192,
      data: bytes(1001, 3),
    },
    { opcode: 0x06, immediate: true, reasonCode: 0, itt: 6, cid: 1, cmdSN: 30, expStatSN: 31 },
    { opcode: 0x10, type: 1, lun: 0n, itt: 7, ttt: 0xffffffff, expStatSN: 32, begRun: 3, runLength: 2 },
    {
      opcode: 0x20,
      lun: 0n,
      itt: 0x11,
      ttt: 0xffffffff,
      statSN: 100,
      expCmdSN: 8,
      maxCmdSN: 135,
      data: bytes(5),
    },
    {
      opcode: 0x21,
      underflow: true,
      response: 0,
      status: 2,
      itt: 0xdeadbeef,
      snackTag: 0,
      statSN: 101,
      expCmdSN: 9,
      maxCmdSN: 136,
      expDataSN: 4,
      bidiReadResidualCount: 0,
      residualCount: 512,
      data: Buffer.concat([Buffer.from([0, 18]), bytes(18, 4)]),
    },
    { opcode: 0x22, response: 0, itt: 3, statSN: 102, expCmdSN: 10, maxCmdSN: 137 },
    {
      opcode: 0x23,
      transit: true,
      continue: false,
      csg: 1,
      nsg: 3,
      versionMax: 0,
      versionActive: 0,
      isid: Buffer.from('400001370000', 'hex'),
      tsih: 0x0102,
      itt: 0x1000,
      statSN: 1,
      expCmdSN: 0x12345678,
      maxCmdSN: 0x123456f7,
      statusClass: 0,
      statusDetail: 0,
      data: Buffer.from('TargetPortalGroupTag=1\0'),
    },
    {
      opcode: 0x24,
      final: false,
      continue: true,
      lun: 0n,
      itt: 5,
      ttt: 0x42,
      statSN: 103,
      expCmdSN: 21,
      maxCmdSN: 148,
      data: bytes(63, 5),
    },
    {
      opcode: 0x25,
      final: true,
      acknowledge: false,
      statusPresent: true,
      status: 0,
      overflow: true,
      lun,
      itt: 0xdeadbeef,
      ttt: 0xffffffff,
      statSN: 104,
      expCmdSN: 22,
      maxCmdSN: 149,
      dataSN: 0,
      bufferOffset: 0,
      residualCount: 7,
      data: bytes(8191, 6),
    },
    {
      opcode: 0x26,
      response: 0,
      itt: 6,
      statSN: 105,
      expCmdSN: 31,
      maxCmdSN: 158,
      time2Wait: 2,
      time2Retain: 20,
    },
    {
      opcode: 0x31,
      lun,
      itt: 0xdeadbeef,
      ttt: 0x77,
      statSN: 106,
      expCmdSN: 23,
      maxCmdSN: 150,
      r2tSN: 1,
      bufferOffset: 65536,
      desiredDataTransferLength: 262144,
    },
    {
      opcode: 0x32,
      lun,
      statSN: 107,
      expCmdSN: 24,
      maxCmdSN: 151,
      asyncEvent: 1,
      asyncVCode: 0,
      parameter1: 0,
      parameter2: 0,
      parameter3: 5,
    },
    {
      opcode: 0x3f,
      reason: 0x02,
      statSN: 108,
      expCmdSN: 25,
      maxCmdSN: 152,
      dataSN: 0,
      data: bytes(48, 7),
    },
  ];
}

/** Login Request fields that {@link loginPdu} lets a caller change from its defaults. */
export interface LoginPduOpts {
  isid?: Buffer;
  tsih?: number;
  cid?: number;
  itt?: number;
  cmdSN?: number;
  expStatSN?: number;
  csg?: number;
  nsg?: number;
  transit?: boolean;
  continue?: boolean;
  versionMin?: number;
  versionMax?: number;
}

/**
 * One encoded Login Request: by default a single-PDU login from the operational stage straight to full
 * feature phase (ITT 1, CID 1, CmdSN 1), carrying `data` or the text encoding of the keys.
 */
export function loginPdu(data: Buffer | KeyValue[], o: LoginPduOpts = {}): Buffer {
  const parts = encodeLoginRequest({
    immediate: true,
    transit: o.transit ?? true,
    continue: o.continue ?? false,
    csg: o.csg ?? 1,
    nsg: o.nsg ?? 3,
    versionMax: o.versionMax ?? 0,
    versionMin: o.versionMin ?? 0,
    isid: o.isid ?? Buffer.from('400000000001', 'hex'),
    tsih: o.tsih ?? 0,
    itt: o.itt ?? 1,
    cid: o.cid ?? 1,
    cmdSN: o.cmdSN ?? 1,
    expStatSN: o.expStatSN ?? 0,
    data: Buffer.isBuffer(data) ? data : encodeText(data),
  });
  return Buffer.concat(parts);
}
