/**
 * Fuzzes whole connections in process: IscsiConnection + IscsiTarget + the real SCSI layer over in-memory
 * LUs, driven through a fake transport with thousands of episodes — garbage before login, reactive login
 * conversations (byte-mutated too), and long full-feature sessions of mostly valid, partly mutated traffic
 * (SCSI with real CDBs, R2T/Data-Out sequences with wrong TTTs/DataSN/offsets, TMF, Text, NOP, SNACK,
 * Logout), cut into random chunks, sometimes with a peer that stops reading.
 *
 * Checked throughout: no exception escapes, no internal error is logged by the session or SCSI layer,
 * everything the target sends decodes cleanly, per-connection state stays bounded, connections are fully
 * released, and the LU of another initiator is never touched.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type DigestOptions, encodeLoginRequest } from '../../../src/iscsi/pdu/index.js';
import { loginPdu } from '../pdu/fixtures.js';
import { FullFeatureGen, garbageText, mutateBytes, randomChunks, STANDARD_OFFER } from './corpus.js';
import {
  connect,
  FUZZ_INIT,
  FUZZ_TARGET,
  type FuzzTransport,
  type FuzzWorld,
  IDS,
  internals,
  LU_BLOCKS,
  makeWorld,
  tick,
} from './harness.js';
import { LoginScript } from './login-gen.js';
import { announceSeed, fuzzSeed, Rng, scaled } from './prng.js';

const QUEUE_DEPTH = 32;
const escaped: unknown[] = [];
const onEscape = (err: unknown) => escaped.push(err);

before(() => {
  process.on('unhandledRejection', onEscape);
  process.on('uncaughtException', onEscape);
});
after(() => {
  process.off('unhandledRejection', onEscape);
  process.off('uncaughtException', onEscape);
});

interface Stats {
  episodes: Record<string, number>;
  pdus: number;
  mutated: number;
  bytes: number;
  loggedIn: number;
  dropped: number;
  maxTasks: number;
  maxOut: number;
  maxDecoder: number;
}

function checkBounded(
  world: FuzzWorld,
  t: FuzzTransport,
  conn: ReturnType<typeof connect>['conn'],
  lastChunk: number,
  stats: Stats,
  ctx: string,
): void {
  const s = internals(conn);
  stats.maxTasks = Math.max(stats.maxTasks, s.tasks);
  stats.maxOut = Math.max(stats.maxOut, s.outBytes);
  stats.maxDecoder = Math.max(stats.maxDecoder, s.decoderBuffered);
  // The decoder holds at most one PDU (plus whatever the last chunk brought) while the connection lives.
  assert.ok(
    conn.isClosed || s.decoderBuffered <= 48 + 256 + 8 + 262144 + 4 + lastChunk,
    `decoder holds ${s.decoderBuffered} bytes, ${s.tasks} tasks, connection ${s.state} (${ctx})`,
  );
  // Tasks: the CmdSN window plus immediate commands, plus what one chunk can carry before reading pauses.
  assert.ok(s.tasks <= QUEUE_DEPTH + 64 + Math.ceil(lastChunk / 48), `${s.tasks} tasks (${ctx})`);
  assert.ok(s.early <= QUEUE_DEPTH, `${s.early} early commands (${ctx})`);
  assert.ok(s.terminated <= 256 && s.abortOnArrival <= 256 + QUEUE_DEPTH, ctx);
  assert.ok(
    s.outBytes <= 64 * 1024 * 1024 + 2 * 1024 * 1024,
    `${s.outBytes} bytes of output queued (${ctx})`,
  );
  assert.deepEqual(t.outputErrors, [], `target output does not decode (${ctx})`);
  assert.deepEqual(t.sequenceErrors, [], `target numbering broken (${ctx})`);
  assert.deepEqual(world.log.internalErrors(), [], `internal error logged (${ctx})`);
  assert.deepEqual(escaped, [], `exception escaped (${ctx})`);
}

/** I_T nexuses the SCSI layer still keeps state for. */
function scsiNexuses(world: FuzzWorld): number {
  return (world.scsi as unknown as { nexuses: Map<string, unknown> }).nexuses.size;
}

/** Sends bytes in random chunks, letting the event loop run now and then; stops once the connection is gone. */
async function feed(
  rng: Rng,
  world: FuzzWorld,
  c: ReturnType<typeof connect>,
  stream: Buffer,
  stats: Stats,
  ctx: string,
): Promise<void> {
  for (const chunk of randomChunks(rng, stream, rng.pick([64, 4096, 65536]))) {
    if (c.conn.isClosed) return;
    c.conn.receive(chunk);
    stats.bytes += chunk.length;
    checkBounded(world, c.t, c.conn, chunk.length, stats, ctx);
    if (rng.chance(0.3)) await tick();
  }
}

/** One-PDU login as FUZZ_INIT (Normal or Discovery, digests or not); true when it reached full feature phase. */
async function goodLogin(
  rng: Rng,
  c: ReturnType<typeof connect>,
  isid: Buffer,
  o: { discovery: boolean; digests: DigestOptions },
): Promise<boolean> {
  const offer = STANDARD_OFFER.map(([k, v]): [string, string] => {
    if (k === 'HeaderDigest') return [k, o.digests.headerDigest ? 'CRC32C' : 'None'];
    if (k === 'DataDigest') return [k, o.digests.dataDigest ? 'CRC32C' : 'None'];
    if (k === 'FirstBurstLength' && rng.chance(0.1)) return [k, '8192'];
    if (k === 'InitialR2T' && rng.chance(0.2)) return [k, 'Yes'];
    if (k === 'ImmediateData' && rng.chance(0.2)) return [k, 'No'];
    if (k === 'MaxRecvDataSegmentLength' && rng.chance(0.2)) return [k, '512'];
    return [k, v];
  });
  const identity = o.discovery
    ? `InitiatorName=${FUZZ_INIT}\0SessionType=Discovery\0`
    : `InitiatorName=${FUZZ_INIT}\0SessionType=Normal\0TargetName=${FUZZ_TARGET}\0`;
  c.conn.receive(
    loginPdu(
      Buffer.concat([Buffer.from(identity), Buffer.from(offer.map(([k, v]) => `${k}=${v}\0`).join(''))]),
      { isid },
    ),
  );
  await tick();
  const rsp = c.t.take().find((p) => p.opcode === 0x23);
  const ok = rsp?.opcode === 0x23 && rsp.statusClass === 0 && rsp.transit === true && rsp.nsg === 3;
  if (ok)
    c.t.decoder.setDigests({ header: o.digests.headerDigest === true, data: o.digests.dataDigest === true });
  return ok;
}

describe('fuzz: connection state machine (in process, real SCSI layer)', () => {
  test('thousands of mutated PDU streams and login sequences', { timeout: 300_000 }, async () => {
    const seed = fuzzSeed();
    announceSeed('connection fuzz', seed);
    const rng = new Rng(seed);
    const started = Date.now();
    const stats: Stats = {
      episodes: {},
      pdus: 0,
      mutated: 0,
      bytes: 0,
      loggedIn: 0,
      dropped: 0,
      maxTasks: 0,
      maxOut: 0,
      maxDecoder: 0,
    };
    const warnings = new Map<string, number>();
    const worlds = scaled(4);
    const perWorld = scaled(500);
    for (let w = 0; w < worlds; w++) {
      const world = makeWorld({
        queueDepth: QUEUE_DEPTH,
        maxPendingBytes: rng.pick([64 * 1024 * 1024, 1024 * 1024]),
        maxTargetPendingBytes: rng.pick([512 * 1024 * 1024, 2 * 1024 * 1024]),
      });
      // State of the guarded LU that nothing FUZZ_INIT does may change.
      world.guardedLu.softwareWriteProtect = true;
      world.guardedLu.writeCacheEnabled = false;
      world.guardedLu.scsi2Holder = 'iqn.2024-01.test.fuzz:chap,i,0x000000000001';
      const open: ReturnType<typeof connect>[] = [];
      for (let e = 0; e < perWorld; e++) {
        const ctx = `seed ${seed} world ${w} episode ${e}`;
        const kind = rng.weighted<string>([
          [3, 'prelogin'],
          [3, 'login'],
          [6, 'session'],
          [1, 'partial'],
          [1, 'burst'],
        ]);
        stats.episodes[kind] = (stats.episodes[kind] ?? 0) + 1;
        const c = connect(world);
        if (rng.chance(0.1)) open.push(c); // left open for a while: several sessions at once
        // A small ISID set now and then, so sessions reinstate each other.
        const isid = Buffer.from([0x40, 0, 0, 0, 0, rng.chance(0.3) ? rng.int(3) : rng.range(3, 255)]);
        if (kind === 'prelogin') {
          const gen = new FullFeatureGen(
            rng,
            { blocks: LU_BLOCKS, byteMutation: 0.7, fieldMutation: 0.3, luns: [0, 1], allowTerminal: true },
            1,
          );
          const parts: Buffer[] = [];
          for (let i = rng.range(1, 8); i > 0; i--) {
            parts.push(
              rng.chance(0.3)
                ? mutateBytes(rng, loginPdu(rng.chance(0.5) ? STANDARD_OFFER : garbageText(rng)))
                : gen.next(),
            );
            stats.pdus++;
          }
          await feed(rng, world, c, Buffer.concat(parts), stats, ctx);
        } else if (kind === 'login') {
          const script = new LoginScript(rng, IDS, { deviate: rng.pick([0.05, 0.2, 0.5]), isid });
          const mutate = rng.chance(0.3) ? 0.2 : 0;
          let req = script.first();
          for (let s = 0; s < 12 && !c.conn.isClosed; s++) {
            let bytes: Buffer = Buffer.concat(encodeLoginRequest(req));
            if (rng.chance(mutate)) {
              bytes = mutateBytes(rng, bytes);
              stats.mutated++;
            }
            stats.pdus++;
            await feed(rng, world, c, bytes, stats, ctx);
            await tick();
            const rsp = c.t.take().find((p) => p.opcode === 0x23);
            if (rsp?.opcode !== 0x23 || rsp.statusClass !== 0) break;
            if (rsp.transit && rsp.nsg === 3) {
              stats.loggedIn++;
              const info = c.conn.sessionInfo;
              assert.ok(info, ctx);
              if (info.type === 'Normal') {
                const n = info.initiatorName.toLowerCase();
                assert.ok(
                  n === IDS.open.toLowerCase() || n === IDS.chap.toLowerCase(),
                  `ACL bypass: ${n} (${ctx})`,
                );
                if (n === IDS.chap.toLowerCase())
                  assert.ok(script.provedChap && info.auth !== 'None', `CHAP bypass (${ctx})`);
              }
              break;
            }
            req = script.next(rsp);
          }
        } else if (kind === 'burst') {
          // Hundreds of commands in one chunk (immediate ones past the CmdSN window), often to a peer that
          // does not read: the window, admission queue and read backpressure all get to work.
          if (!(await goodLogin(rng, c, isid, { discovery: false, digests: {} })))
            assert.fail(`good login refused (${ctx})`);
          c.t.congested = rng.chance(0.5);
          const gen = new FullFeatureGen(
            rng,
            { blocks: LU_BLOCKS, byteMutation: 0, fieldMutation: 0.02, luns: [0], naas: [world.fuzzLu.naa] },
            1,
          );
          const parts: Buffer[] = [];
          for (let i = rng.range(100, 400); i > 0; i--) parts.push(gen.next());
          stats.pdus += parts.length;
          const all = Buffer.concat(parts);
          c.conn.receive(all);
          stats.bytes += all.length;
          checkBounded(world, c.t, c.conn, all.length, stats, ctx);
          for (let k = 0; k < 20; k++) {
            await tick();
            checkBounded(world, c.t, c.conn, 0, stats, ctx);
          }
          if (c.t.congested && rng.chance(0.5)) {
            c.t.congested = false;
            c.conn.drained();
            for (let k = 0; k < 10; k++) await tick();
          }
        } else if (kind === 'partial') {
          // Half a PDU, then silence or a close.
          const pdu = loginPdu(STANDARD_OFFER);
          await feed(rng, world, c, pdu.subarray(0, rng.range(1, pdu.length - 1)), stats, ctx);
          stats.pdus++;
        } else {
          const discovery = rng.chance(0.1);
          const digests: DigestOptions = rng.chance(0.25)
            ? { headerDigest: rng.chance(0.7), dataDigest: rng.chance(0.7) }
            : {};
          if (!(await goodLogin(rng, c, isid, { discovery, digests })))
            assert.fail(`good login refused (${ctx})`);
          stats.loggedIn++;
          const gen = new FullFeatureGen(
            rng,
            {
              blocks: LU_BLOCKS,
              byteMutation: rng.pick([0, 0.02, 0.1, 0.3]),
              fieldMutation: rng.pick([0, 0.05, 0.2]),
              luns: [0, 1, 7],
              allowTerminal: rng.chance(0.3),
              firstBurst: c.conn.negotiated?.firstBurstLength ?? 65536,
              digests,
              naas: [world.fuzzLu.naa, world.guardedLu.naa],
            },
            1,
          );
          const n = rng.range(5, 150);
          const peerStopsReading = rng.chance(0.1);
          for (let i = 0; i < n && !c.conn.isClosed; i++) {
            if (peerStopsReading && i === n >> 1) c.t.congested = true;
            const batch: Buffer[] = [];
            for (let k = rng.range(1, 6); k > 0; k--) batch.push(gen.next());
            stats.pdus += batch.length;
            await feed(rng, world, c, Buffer.concat(batch), stats, ctx);
            if (rng.chance(0.5)) await tick();
            for (const p of c.t.take()) gen.learn(p);
          }
          stats.mutated += gen.mutated;
          if (rng.chance(0.5)) {
            // Let whatever is executing finish before the close.
            for (let k = 0; k < 5; k++) await tick();
          }
        }
        checkBounded(world, c.t, c.conn, 0, stats, ctx);
        if (!open.includes(c)) {
          if (c.conn.isClosed) stats.dropped++;
          else if (rng.chance(0.5)) c.conn.destroy('fuzz episode over');
          else c.conn.transportClosed();
        }
        if (open.length > 4 || (open.length > 0 && rng.chance(0.05)))
          open.shift()!.conn.destroy('fuzz: closing an old one');
      }
      for (const c of open) c.conn.destroy('fuzz: world over');
      for (let k = 0; k < 20 && world.target.connectionCount > 0; k++) await tick(5);
      assert.equal(world.target.connectionCount, 0, `connections leaked (seed ${seed} world ${w})`);
      assert.equal(world.target.liveSessions().length, 0, `sessions leaked (seed ${seed} world ${w})`);
      for (let k = 0; k < 50 && scsiNexuses(world) > 0; k++) await tick(5);
      assert.equal(
        scsiNexuses(world),
        0,
        `I_T nexus state leaked in the SCSI layer (seed ${seed} world ${w})`,
      );
      // Every byte charged to the target-wide memory budget was given back.
      for (let k = 0; k < 50 && world.target.pendingBytes !== 0; k++) await tick(5);
      assert.equal(world.target.pendingBytes, 0, `target-wide budget leaked (seed ${seed} world ${w})`);
      // Nothing FUZZ_INIT did reached the LU of the CHAP initiator.
      const pages = (world.guardedStore as unknown as { pages: Map<number, Buffer> }).pages;
      assert.equal(pages.size, 0, `the guarded LU was written (seed ${seed} world ${w})`);
      assert.deepEqual(
        [
          world.guardedLu.softwareWriteProtect,
          world.guardedLu.writeCacheEnabled,
          world.guardedLu.scsi2Holder,
        ],
        [true, false, 'iqn.2024-01.test.fuzz:chap,i,0x000000000001'],
        `the guarded LU's state was changed by an initiator without access (seed ${seed} world ${w})`,
      );
      assert.deepEqual(world.log.internalErrors(), []);
      for (const [m, n] of world.log.counts) warnings.set(m, (warnings.get(m) ?? 0) + n);
    }
    console.log(
      `# target warnings: ${JSON.stringify(Object.fromEntries([...warnings].sort((a, b) => b[1] - a[1])))}`,
    );
    assert.deepEqual(escaped, []);
    console.log(
      `# connection fuzz: ${worlds * perWorld} episodes ${JSON.stringify(stats.episodes)}, ${stats.pdus} PDUs (${stats.mutated} byte-mutated), ${stats.bytes} bytes, ${stats.loggedIn} logins, ${stats.dropped} dropped by the target, max ${stats.maxTasks} tasks / ${stats.maxOut} B queued / ${stats.maxDecoder} B in the decoder, ${Date.now() - started} ms`,
    );
  });
});
