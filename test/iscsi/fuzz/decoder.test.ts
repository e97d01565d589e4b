/**
 * Fuzzes the PDU decoder with tens of thousands of mutated byte streams: only typed ProtocolErrors escape,
 * a fatal error poisons the decoder, buffering never exceeds one maximal PDU, and the outcome does not
 * depend on how the stream was cut into chunks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crc32c } from '../../../src/iscsi/crc32c.js';
import { type DecodedPdu, PduDecoder, ProtocolError } from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import { FullFeatureGen, garbageText, mutateBytes, randomChunks, STANDARD_OFFER } from './corpus.js';
import { announceSeed, fuzzSeed, Rng, scaled } from './prng.js';

interface Outcome {
  pdus: string[];
  error: string | undefined;
  maxBuffered: number;
}

/** Decodes chunk by chunk, continuing past non-fatal errors; checks the invariants as it goes. */
function decodeAll(chunks: readonly Buffer[], opts: ConstructorParameters<typeof PduDecoder>[0]): Outcome {
  const dec = new PduDecoder(opts);
  const maxData = opts?.maxDataSegmentLength ?? 262144;
  const maxAhs = opts?.maxAhsLength ?? 256;
  // One PDU at most: BHS, AHS, header digest, padded data, data digest.
  const bound = 48 + maxAhs + 4 + ((maxData + 3) & ~3) + 4;
  const pdus: string[] = [];
  let error: string | undefined;
  let maxBuffered = 0;
  const describePdu = (p: DecodedPdu) =>
    `${p.opcode}:${p.header.toString('hex')}:${p.ahs.length}:${p.data.length}:${crc32c(p.data)}`;
  outer: for (const c of chunks) {
    dec.push(Buffer.from(c));
    for (;;) {
      let p: DecodedPdu | undefined;
      try {
        p = dec.next();
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `untyped error from the decoder: ${String(err)}`);
        if (err.fatal) {
          error = err.reason;
          // Poisoned: the same error again, whatever is pushed.
          dec.push(Buffer.alloc(100));
          assert.throws(
            () => dec.next(),
            (e) => e === err,
          );
          break outer;
        }
        assert.equal(err.header?.length, 48, 'a non-fatal error carries the offending BHS');
        pdus.push(`!${err.reason}`);
        continue;
      }
      if (!p) break;
      assert.equal(p.header.length, 48);
      assert.ok(p.data.length <= maxData, 'data segment within the limit');
      pdus.push(describePdu(p));
    }
    maxBuffered = Math.max(maxBuffered, dec.bufferedBytes);
    assert.ok(
      dec.bufferedBytes <= bound + c.length,
      `decoder holds ${dec.bufferedBytes} bytes (bound ${bound})`,
    );
  }
  if (error === undefined) {
    // What is left is at most one incomplete PDU.
    assert.ok(dec.bufferedBytes < bound, `left ${dec.bufferedBytes} bytes buffered`);
  }
  return { pdus, error, maxBuffered };
}

/** Valid initiator PDUs of every kind, some with digests. */
function seedStream(rng: Rng, digests: boolean): Buffer[] {
  const out: Buffer[] = [];
  if (rng.chance(0.3)) {
    out.push(
      loginPdu(rng.chance(0.5) ? STANDARD_OFFER : garbageText(rng), {
        csg: rng.int(2),
        nsg: rng.pick([1, 3]),
      }),
    );
  }
  const gen = new FullFeatureGen(
    rng,
    {
      blocks: 2048,
      byteMutation: 0,
      fieldMutation: 0.1,
      luns: [0, 1],
      allowTerminal: true,
      ...(digests ? { digests: { headerDigest: rng.chance(0.8), dataDigest: rng.chance(0.5) } } : {}),
    },
    1,
  );
  const n = rng.range(1, 6);
  for (let i = 0; i < n; i++) out.push(gen.next());
  return out;
}

describe('fuzz: PduDecoder', () => {
  test('mutated streams: typed errors only, bounded buffering, chunking does not matter', () => {
    const seed = fuzzSeed();
    announceSeed('decoder fuzz', seed);
    const rng = new Rng(seed);
    const iterations = scaled(20000);
    const started = Date.now();
    let pdus = 0;
    let fatal = 0;
    let bytes = 0;
    for (let i = 0; i < iterations; i++) {
      const digests = rng.chance(0.2);
      const opts = {
        role: rng.pick(['target', 'target', 'any'] as const),
        maxDataSegmentLength: rng.pick([8192, 65536, 262144]),
        maxAhsLength: rng.pick([256, 1020]),
        headerDigest: digests && rng.chance(0.8),
        dataDigest: digests && rng.chance(0.5),
      };
      const pieces = seedStream(rng, digests);
      const mutatedPieces = pieces.map((p) =>
        rng.chance(0.5) ? mutateBytes(rng, p, undefined, rng.pick(pieces)) : p,
      );
      if (rng.chance(0.1)) mutatedPieces.push(rng.bytes(rng.range(1, 200)));
      const stream = Buffer.concat(mutatedPieces);
      bytes += stream.length;
      const whole = decodeAll([stream], opts);
      const split = decodeAll(
        randomChunks(rng, stream, stream.length < 600 ? rng.pick([1, 7, 48]) : rng.pick([48, 1000, 4096])),
        opts,
      );
      assert.deepEqual(split.pdus, whole.pdus, `iteration ${i}: PDUs differ with chunking (seed ${seed})`);
      assert.equal(split.error, whole.error, `iteration ${i}: errors differ with chunking (seed ${seed})`);
      pdus += whole.pdus.length;
      if (whole.error) fatal++;
    }
    console.log(
      `# decoder fuzz: ${iterations} streams, ${bytes} bytes, ${pdus} PDUs/rejects, ${fatal} fatal, ${Date.now() - started} ms`,
    );
  });

  test('a header claiming a huge data segment is refused before anything is buffered', () => {
    const dec = new PduDecoder({ maxDataSegmentLength: 8192 });
    const h = Buffer.alloc(48);
    h[0] = 0x01;
    h[5] = 0xff;
    h[6] = 0xff;
    h[7] = 0xff;
    dec.push(h);
    assert.throws(
      () => dec.next(),
      (e) => e instanceof ProtocolError && e.reason === 'data-segment-too-long',
    );
    const a = Buffer.alloc(48);
    a[4] = 255;
    const dec2 = new PduDecoder();
    dec2.push(a);
    assert.throws(
      () => dec2.next(),
      (e) => e instanceof ProtocolError && e.reason === 'ahs-too-long',
    );
  });
});
