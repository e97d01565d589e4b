import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '../../../src/iscsi/crc32c.js';
import {
  concatPdu,
  DataDigestError,
  type DecodedPdu,
  decodePdu,
  encodeDataIn,
  encodeDataOut,
  encodeLoginResponse,
  encodeNopOut,
  encodePdu,
  encodeReject,
  encodeScsiResponse,
  HeaderDigestError,
  lunField,
  lunNumber,
  type Pdu,
  PduDecoder,
  ProtocolError,
} from '../../../src/iscsi/pdu/index.js';
import { samplePdus } from './fixtures.js';

const DIGEST_MODES = [
  { headerDigest: false, dataDigest: false },
  { headerDigest: true, dataDigest: false },
  { headerDigest: false, dataDigest: true },
  { headerDigest: true, dataDigest: true },
];

/** Every field of the original appears unchanged in the decoded PDU (data compared by bytes). */
function assertSame(decoded: DecodedPdu, original: Pdu): void {
  for (const [k, v] of Object.entries(original)) {
    const got = (decoded as unknown as Record<string, unknown>)[k];
    if (Buffer.isBuffer(v))
      assert.ok(Buffer.isBuffer(got) && v.equals(got), `field ${k} of opcode ${original.opcode}`);
    else assert.deepEqual(got, v, `field ${k} of opcode 0x${original.opcode.toString(16)}`);
  }
  if (!original.data) assert.equal(decoded.data.length, 0);
}

function decodeAll(dec: PduDecoder): DecodedPdu[] {
  return [...dec];
}

describe('PDU codec round trips', () => {
  for (const mode of DIGEST_MODES) {
    test(`every opcode encodes and decodes back (${JSON.stringify(mode)})`, () => {
      for (const pdu of samplePdus()) {
        const parts = encodePdu(pdu, mode);
        const wire = concatPdu(parts);
        assert.equal(wire.length % 4, 0, 'PDUs are padded to 4 bytes');
        const decoded = decodePdu(wire, mode);
        assert.equal(decoded.opcode, pdu.opcode);
        assertSame(decoded, pdu);
      }
    });
  }

  test('encoders keep the data segment as its own buffer (no copy)', () => {
    const data = Buffer.alloc(1 << 20, 7);
    const parts = encodeDataIn({ itt: 1, expCmdSN: 1, maxCmdSN: 2, dataSN: 0, bufferOffset: 0, data });
    assert.equal(parts.length, 2);
    assert.equal(parts[1], data);
    const withDigest = encodeDataIn(
      { itt: 1, expCmdSN: 1, maxCmdSN: 2, dataSN: 0, bufferOffset: 0, data: data.subarray(0, 5) },
      { dataDigest: true },
    );
    assert.equal(withDigest.length, 3);
    assert.equal(withDigest[2]!.length, 3 + 4, '3 bytes of padding then the digest');
  });

  test('Data-In without status leaves StatSN, status and residual zero and sets TTT to 0xffffffff', () => {
    const [h] = encodeDataIn({
      itt: 9,
      statSN: 55,
      status: 2,
      residualCount: 3,
      expCmdSN: 1,
      maxCmdSN: 2,
      dataSN: 1,
      bufferOffset: 8192,
      final: false,
    });
    assert.equal(h![1], 0);
    assert.equal(h![3], 0);
    assert.equal(h!.readUInt32BE(20), 0xffffffff);
    assert.equal(h!.readUInt32BE(24), 0);
    assert.equal(h!.readUInt32BE(44), 0);
  });

  test('Login Response is byte-exact', () => {
    const wire = concatPdu(
      encodeLoginResponse({
        transit: true,
        csg: 1,
        nsg: 3,
        versionMax: 0,
        versionActive: 0,
        isid: Buffer.from('23d000000001', 'hex'),
        tsih: 5,
        itt: 0x01020304,
        statSN: 0x10,
        expCmdSN: 0x20,
        maxCmdSN: 0x9f,
        statusClass: 0,
        statusDetail: 0,
        data: Buffer.from('A=B\0'),
      }),
    );
    assert.equal(
      wire.toString('hex'),
      [
        '23870000', // opcode, T|CSG=1|NSG=3, version max/active
        '00000004', // TotalAHSLength 0, DataSegmentLength 4
        '23d0000000010005', // ISID, TSIH
        '01020304', // ITT
        '00000000',
        '00000010', // StatSN
        '00000020', // ExpCmdSN
        '0000009f', // MaxCmdSN
        '0000', // status class/detail
        '00000000000000000000',
        '413d4200', // A=B\0
      ].join(''),
    );
  });

  test('header digest covers BHS+AHS, data digest covers data+padding, both little-endian', () => {
    const data = Buffer.from('hello');
    const wire = concatPdu(
      encodeNopOut(
        { lun: 0n, itt: 1, ttt: 0xffffffff, cmdSN: 1, expStatSN: 1, data },
        { headerDigest: true, dataDigest: true },
      ),
    );
    assert.equal(wire.length, 48 + 4 + 8 + 4);
    assert.equal(wire.readUInt32LE(48), crc32c(wire.subarray(0, 48)));
    assert.equal(wire.readUInt32LE(60), crc32c(wire.subarray(52, 60)));
    assert.equal(wire.subarray(52, 60).toString('latin1'), 'hello\0\0\0');
  });

  test('LUN helpers: peripheral below 256, flat space above', () => {
    assert.equal(lunField(1), 0x0001_0000_0000_0000n);
    assert.equal(lunField(300), 0x412c_0000_0000_0000n);
    for (const n of [0, 1, 255, 256, 16383]) assert.equal(lunNumber(lunField(n)), n);
    assert.equal(lunNumber(0x0001_0000_0000_0001n), -1);
    assert.throws(() => lunField(16384), RangeError);
  });
});

describe('PduDecoder framing', () => {
  const pdus = samplePdus();

  for (const mode of DIGEST_MODES) {
    const hd = mode.headerDigest ? 'HD' : 'no HD';
    const dd = mode.dataDigest ? 'DD' : 'no DD';

    test(`each PDU cut at every offset decodes identically (${hd}, ${dd})`, () => {
      for (const pdu of pdus) {
        const wire = concatPdu(encodePdu(pdu, mode));
        for (let cut = 0; cut <= wire.length; cut++) {
          const dec = new PduDecoder({ role: 'any', maxDataSegmentLength: 1 << 20, ...mode });
          dec.push(Buffer.from(wire.subarray(0, cut)));
          const early = decodeAll(dec);
          if (cut < wire.length) assert.equal(early.length, 0, `nothing before the last byte (cut ${cut})`);
          dec.push(Buffer.from(wire.subarray(cut)));
          const got = [...early, ...decodeAll(dec)];
          assert.equal(got.length, 1, `opcode 0x${pdu.opcode.toString(16)} cut ${cut}`);
          assertSame(got[0]!, pdu);
          assert.equal(dec.bufferedBytes, 0);
        }
      }
    });

    test(`all PDUs in one chunk, and the stream split at every offset (${hd}, ${dd})`, () => {
      const stream = Buffer.concat(pdus.map((p) => concatPdu(encodePdu(p, mode))));
      const one = new PduDecoder({ role: 'any', maxDataSegmentLength: 1 << 20, ...mode });
      one.push(stream);
      const all = decodeAll(one);
      assert.equal(all.length, pdus.length);
      for (const [i, d] of all.entries()) assertSame(d, pdus[i]!);

      for (let cut = 0; cut <= stream.length; cut += 7) {
        const dec = new PduDecoder({ role: 'any', maxDataSegmentLength: 1 << 20, ...mode });
        dec.push(stream.subarray(0, cut));
        const got = decodeAll(dec);
        dec.push(stream.subarray(cut));
        got.push(...decodeAll(dec));
        assert.equal(got.length, pdus.length, `cut ${cut}`);
        for (const [i, d] of got.entries()) assertSame(d, pdus[i]!);
      }
    });
  }

  test('byte-at-a-time and random chunking', () => {
    const stream = Buffer.concat(
      pdus.map((p) => concatPdu(encodePdu(p, { headerDigest: true, dataDigest: true }))),
    );
    const dec = new PduDecoder({
      role: 'any',
      maxDataSegmentLength: 1 << 20,
      headerDigest: true,
      dataDigest: true,
    });
    const got: DecodedPdu[] = [];
    for (let i = 0; i < stream.length; i++) {
      dec.push(stream.subarray(i, i + 1));
      got.push(...decodeAll(dec));
    }
    assert.equal(got.length, pdus.length);

    let seed = 12345;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let round = 0; round < 50; round++) {
      const d = new PduDecoder({
        role: 'any',
        maxDataSegmentLength: 1 << 20,
        headerDigest: true,
        dataDigest: true,
      });
      const out: DecodedPdu[] = [];
      for (let off = 0; off < stream.length; ) {
        const n = 1 + (rnd() % 3000);
        d.push(stream.subarray(off, off + n));
        off += n;
        out.push(...decodeAll(d));
      }
      assert.equal(out.length, pdus.length);
      for (const [i, p] of out.entries()) assertSame(p, pdus[i]!);
    }
  });

  test('a PDU inside one chunk is returned as views of that chunk; a split one is copied once', () => {
    const data = Buffer.alloc(65536, 0xab);
    const wire = concatPdu(
      encodeDataOut({ lun: 0n, itt: 1, ttt: 2, expStatSN: 0, dataSN: 0, bufferOffset: 0, final: true, data }),
    );
    const chunk = Buffer.concat([wire, wire.subarray(0, 10)]);
    const dec = new PduDecoder();
    dec.push(chunk);
    const p = dec.next()!;
    assert.equal(p.data.buffer, chunk.buffer, 'data is a view, not a copy');
    assert.equal(p.data.byteOffset, chunk.byteOffset + 48);
    assert.equal(dec.next(), undefined);
    assert.equal(dec.bufferedBytes, 10);

    const split = new PduDecoder();
    split.push(wire.subarray(0, 30000));
    assert.equal(split.next(), undefined);
    split.push(wire.subarray(30000));
    const q = split.next()!;
    assert.ok(q.data.equals(data));
    assert.notEqual(q.data.buffer, wire.buffer);
  });

  test('digests can be switched on between PDUs (after login)', () => {
    const login = concatPdu(encodePdu(samplePdus()[4]!));
    const nop = concatPdu(
      encodeNopOut(
        { lun: 0n, itt: 1, ttt: 0xffffffff, cmdSN: 1, expStatSN: 1 },
        { headerDigest: true, dataDigest: true },
      ),
    );
    const dec = new PduDecoder();
    dec.push(Buffer.concat([login, nop]));
    assert.equal(dec.next()!.opcode, 0x03);
    dec.setDigests({ header: true, data: true });
    assert.equal(dec.next()!.opcode, 0x00);

    // Also when the next header was already looked at (and found incomplete) before the switch.
    const ping = concatPdu(
      encodeNopOut(
        { lun: 0n, itt: 2, ttt: 0xffffffff, cmdSN: 1, expStatSN: 1, data: Buffer.from('0123456789') },
        { headerDigest: true, dataDigest: true },
      ),
    );
    const dec2 = new PduDecoder();
    dec2.push(login);
    dec2.push(ping.subarray(0, 50));
    assert.equal(dec2.next()!.opcode, 0x03);
    assert.equal(dec2.next(), undefined);
    dec2.setDigests({ header: true, data: true });
    dec2.push(ping.subarray(50));
    const p = dec2.next()!;
    assert.equal(p.opcode, 0x00);
    assert.equal(p.data.toString(), '0123456789');
    assert.equal(dec2.bufferedBytes, 0);
  });
});

describe('PduDecoder errors', () => {
  const cmd = () =>
    concatPdu(
      encodeNopOut(
        { lun: 0n, itt: 0x55, ttt: 0xffffffff, cmdSN: 1, expStatSN: 1, data: Buffer.from('ping data') },
        { headerDigest: true, dataDigest: true },
      ),
    );

  test('corrupted header → HeaderDigestError, fatal and sticky', () => {
    const wire = cmd();
    wire[20] ^= 1;
    const dec = new PduDecoder({ headerDigest: true, dataDigest: true });
    dec.push(wire);
    assert.throws(
      () => dec.next(),
      (e: unknown) => e instanceof HeaderDigestError && e.fatal && e.kind === 'header',
    );
    assert.throws(() => dec.next(), HeaderDigestError);
  });

  test('corrupted header digest bytes → HeaderDigestError', () => {
    const wire = cmd();
    wire[49] ^= 0x80;
    const dec = new PduDecoder({ headerDigest: true, dataDigest: true });
    dec.push(wire);
    assert.throws(() => dec.next(), HeaderDigestError);
  });

  test('corrupted data → DataDigestError with ITT and header, and decoding continues', () => {
    const bad = cmd();
    bad[52 + 2] ^= 0xff;
    const good = cmd();
    const dec = new PduDecoder({ headerDigest: true, dataDigest: true });
    dec.push(Buffer.concat([bad, good]));
    let err: unknown;
    try {
      dec.next();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof DataDigestError);
    assert.equal(err.fatal, false);
    assert.equal(err.kind, 'data');
    assert.equal(err.itt, 0x55);
    assert.equal(err.rejectReason, 0x02);
    assert.equal(err.header?.length, 48);
    assert.equal(err.header?.readUInt32BE(16), 0x55);
    const next = dec.next();
    assert.equal(next?.opcode, 0x00);
    assert.equal(next?.data.toString(), 'ping data');

    // The Reject answering it carries the bad PDU's header.
    const rej = decodePdu(
      concatPdu(
        encodeReject({ reason: err.rejectReason!, statSN: 1, expCmdSN: 1, maxCmdSN: 1, data: err.header! }),
      ),
    );
    assert.equal(rej.opcode, 0x3f);
    assert.ok(rej.data.equals(err.header!));
  });

  test('data digest mismatch on padding bytes is detected too', () => {
    const wire = cmd(); // 9 data bytes + 3 padding
    wire[52 + 10] = 1;
    const dec = new PduDecoder({ headerDigest: true, dataDigest: true });
    dec.push(wire);
    assert.throws(() => dec.next(), DataDigestError);
  });

  test('oversized data segment is rejected from the header alone, before any data is buffered', () => {
    const big = concatPdu(
      encodeDataOut({
        lun: 0n,
        itt: 9,
        ttt: 1,
        expStatSN: 0,
        dataSN: 0,
        bufferOffset: 0,
        data: Buffer.alloc(300000),
      }),
    );
    const dec = new PduDecoder({ maxDataSegmentLength: 262144 });
    dec.push(big.subarray(0, 48));
    assert.throws(
      () => dec.next(),
      (e: unknown) =>
        e instanceof ProtocolError && e.reason === 'data-segment-too-long' && e.fatal && e.itt === 9,
    );
    assert.throws(() => dec.next(), ProtocolError, 'stays failed');

    const limited = new PduDecoder();
    limited.setLimits({ maxDataSegmentLength: 1000 });
    limited.push(
      concatPdu(
        encodeNopOut({ lun: 0n, itt: 1, ttt: 0, cmdSN: 0, expStatSN: 0, data: Buffer.alloc(1001) }),
      ).subarray(0, 48),
    );
    assert.throws(() => limited.next(), /exceeds 1000/);
  });

  test('oversized AHS is rejected from the BHS alone', () => {
    const h = Buffer.alloc(48);
    h[0] = 0x01;
    h[4] = 200; // 800 bytes of AHS
    const dec = new PduDecoder({ maxAhsLength: 256 });
    dec.push(h);
    assert.throws(
      () => dec.next(),
      (e: unknown) => e instanceof ProtocolError && e.reason === 'ahs-too-long',
    );
  });

  test('reserved opcode → non-fatal bad-opcode, PDU skipped, stream stays in sync', () => {
    const h = Buffer.alloc(48 + 8);
    h[0] = 0x07;
    h[7] = 5; // 5 data bytes + 3 padding
    h.writeUInt32BE(0x77, 16);
    const after = concatPdu(encodeNopOut({ lun: 0n, itt: 1, ttt: 0xffffffff, cmdSN: 0, expStatSN: 0 }));
    const dec = new PduDecoder();
    dec.push(Buffer.concat([h, after]));
    assert.throws(
      () => dec.next(),
      (e: unknown) =>
        e instanceof ProtocolError &&
        e.reason === 'bad-opcode' &&
        !e.fatal &&
        e.itt === 0x77 &&
        e.rejectReason === 0x04,
    );
    assert.equal(dec.next()?.opcode, 0x00);
  });

  test('a target-only opcode sent to the target is refused; the initiator role accepts it', () => {
    const resp = concatPdu(
      encodeScsiResponse({ response: 0, status: 0, itt: 1, statSN: 1, expCmdSN: 1, maxCmdSN: 1 }),
    );
    const target = new PduDecoder();
    target.push(resp);
    assert.throws(
      () => target.next(),
      (e: unknown) => e instanceof ProtocolError && e.reason === 'bad-opcode',
    );
    const initiator = new PduDecoder({ role: 'initiator' });
    initiator.push(resp);
    assert.equal(initiator.next()?.opcode, 0x21);
  });

  test('data on a PDU that carries none → non-fatal bad-field', () => {
    const h = Buffer.alloc(52);
    h[0] = 0x46; // immediate Logout Request
    h[1] = 0x80;
    h[7] = 4;
    const dec = new PduDecoder();
    dec.push(h);
    assert.throws(
      () => dec.next(),
      (e: unknown) => e instanceof ProtocolError && e.reason === 'bad-field' && !e.fatal,
    );
    assert.equal(dec.bufferedBytes, 0);
  });

  test('malformed AHS in a SCSI Command → non-fatal bad-ahs', () => {
    const h = Buffer.alloc(48 + 8);
    h[0] = 0x01;
    h[1] = 0x80;
    h[4] = 2;
    h.writeUInt16BE(50, 48); // claims 50 bytes, only 8 present
    h[50] = 1;
    const dec = new PduDecoder();
    dec.push(h);
    assert.throws(
      () => dec.next(),
      (e: unknown) => e instanceof ProtocolError && e.reason === 'bad-ahs' && !e.fatal,
    );
  });

  test('garbage never escapes as anything but ProtocolError', () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    for (let round = 0; round < 300; round++) {
      const junk = Buffer.from(Array.from({ length: 48 + (round % 200) }, rnd));
      const dec = new PduDecoder({ role: 'any', headerDigest: round % 2 === 0, dataDigest: round % 3 === 0 });
      dec.push(junk);
      for (let i = 0; i < 10; i++) {
        try {
          if (dec.next() === undefined) break;
        } catch (e) {
          assert.ok(e instanceof ProtocolError, String(e));
          if (e.fatal) break;
        }
      }
    }
  });

  test('decodePdu rejects truncated input and trailing bytes', () => {
    const wire = concatPdu(
      encodeNopOut({ lun: 0n, itt: 1, ttt: 0, cmdSN: 0, expStatSN: 0, data: Buffer.from('x') }),
    );
    assert.throws(() => decodePdu(wire.subarray(0, 50)), ProtocolError);
    assert.throws(() => decodePdu(Buffer.concat([wire, Buffer.alloc(4)])), ProtocolError);
  });
});
