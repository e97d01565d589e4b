/**
 * A private tgtd (fujita/tgt) used as the reference target: started on its own control port and a free iSCSI port
 * so it never touches a system tgtd, configured with tgtadm, and stopped by its PID on every exit path.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { alive, cpuSeconds, killChild, onAbort, runOk, stopChild } from './proc.js';

const SOCKET_DIR = '/var/run/tgtd';

/** Returns a TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

/** Resolves once something accepts TCP connections on host:port, or rejects after timeoutMs. */
export async function waitForPort(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        res(true);
      });
      s.once('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A tgtd control port number whose socket does not exist yet. tgtd's -C only names the UNIX socket
 * /var/run/tgtd/socket.<n> and must be ≤ 32767; the system instance uses 0 and libiscsi's tests use small numbers,
 * so we draw from the top of the range, where a clash with another instance is unlikely.
 */
export function pickControlPort(): number {
  for (let i = 0; i < 100; i++) {
    const n = 24_000 + Math.floor(Math.random() * 8_768);
    if (!existsSync(`${SOCKET_DIR}/socket.${n}`) && !existsSync(`${SOCKET_DIR}/socket.${n}.lock`)) return n;
  }
  throw new Error(`no unused tgtd control port found under ${SOCKET_DIR}`);
}

export interface LunOptions {
  /** tgt backing-store type; default rdwr (buffered pread/pwrite), the store the baselines were measured with. */
  bstype?: string;
  /** --params, e.g. `thin_provisioning=1`. */
  params?: string;
  blocksize?: number;
}

export class Tgtd {
  private offAbort: () => void;

  private constructor(
    private readonly child: ChildProcess,
    readonly controlPort: number,
    readonly port: number,
    readonly logFile: string,
  ) {
    this.offAbort = onAbort(() => {
      killChild(child);
      this.removeSocket();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts tgtd in the foreground (its log goes to logFile) and waits until both its control socket and portal answer. */
  static async start(logFile: string, tries = 3): Promise<Tgtd> {
    let last: unknown;
    for (let i = 0; i < tries; i++) {
      const controlPort = pickControlPort();
      const port = await freePort();
      const fd = openSync(logFile, 'a');
      const child = spawn('tgtd', ['-f', '-C', String(controlPort), '--iscsi', `portal=127.0.0.1:${port}`], {
        stdio: ['ignore', fd, fd],
      });
      closeSync(fd);
      const spawnError = new Promise<Error>((res) => child.once('error', res));
      const t = new Tgtd(child, controlPort, port, logFile);
      try {
        await Promise.race([
          t.waitReady(),
          spawnError.then((e) => {
            throw (e as NodeJS.ErrnoException).code === 'ENOENT'
              ? new Error('tgtd not found: apt-get install -y tgt')
              : e;
          }),
        ]);
        return t;
      } catch (e) {
        last = e;
        await t.stop();
        // A missing binary will not appear on a retry; a port raced away by someone else may.
        if (String(e).includes('not found')) break;
      }
    }
    throw new Error(`tgtd did not start (log: ${logFile}): ${last instanceof Error ? last.message : last}`);
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (!alive(this.child)) {
        throw new Error(`tgtd exited (${this.child.exitCode ?? this.child.signalCode}) during start-up`);
      }
      try {
        await runOk('tgtadm', ['-C', String(this.controlPort), '--op', 'show', '--mode', 'sys'], 5_000);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    // tgtd keeps running when it cannot bind its portal, so the control socket alone does not prove it is usable.
    await waitForPort(this.port, Math.max(1, deadline - Date.now()));
  }

  /** Runs `tgtadm -C <ours> --lld iscsi …` and returns its stdout; throws with stderr on failure. */
  adm(args: string[]): Promise<string> {
    return runOk('tgtadm', ['-C', String(this.controlPort), '--lld', 'iscsi', ...args], 30_000);
  }

  async newTarget(tid: number, iqn: string): Promise<void> {
    await this.adm(['--op', 'new', '--mode', 'target', '--tid', String(tid), '-T', iqn]);
  }

  /** Adds a LUN (≥1: tgt's LUN 0 is its own controller LU) over a file or block device. */
  async newLun(tid: number, lun: number, path: string, o: LunOptions = {}): Promise<void> {
    const args = [
      '--op',
      'new',
      '--mode',
      'logicalunit',
      '--tid',
      String(tid),
      '--lun',
      String(lun),
      '-b',
      path,
    ];
    if (o.bstype) args.push('--bstype', o.bstype);
    if (o.blocksize) args.push('--blocksize', String(o.blocksize));
    await this.adm(args);
    if (o.params) {
      await this.adm([
        '--op',
        'update',
        '--mode',
        'logicalunit',
        '--tid',
        String(tid),
        '--lun',
        String(lun),
        '--params',
        o.params,
      ]);
    }
  }

  /**
   * Allows an initiator by IQN. (`-I` would be --initiator-address, which takes an IP or ALL; binding names keeps
   * tgt's ACL equivalent to our per-initiator exports.)
   */
  async bindInitiatorName(tid: number, iqn: string): Promise<void> {
    await this.adm(['--op', 'bind', '--mode', 'target', '--tid', String(tid), '--initiator-name', iqn]);
  }

  /** Sets a target-level iSCSI parameter, e.g. HeaderDigest = "CRC32C,None". */
  async setTargetParam(tid: number, name: string, value: string): Promise<void> {
    await this.adm(['--op', 'update', '--mode', 'target', '--tid', String(tid), '-n', name, '-v', value]);
  }

  show(): Promise<string> {
    return this.adm(['--op', 'show', '--mode', 'target']);
  }

  /** CPU seconds (user+system, all threads) tgtd has used so far. */
  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  /**
   * Stops tgtd by its PID. tgt 1.0.85 ignores SIGTERM while it has targets (and refuses `--op delete --mode system`
   * then), so SIGKILL follows quickly; nothing is lost, since the rdwr store has handed every write to the kernel.
   */
  async stop(): Promise<void> {
    await stopChild(this.child, 'SIGTERM', 500);
    this.removeSocket();
    this.offAbort();
  }

  private removeSocket(): void {
    // Only our own control port's files: stale ones would make pickControlPort skip the number forever.
    for (const f of [
      `${SOCKET_DIR}/socket.${this.controlPort}`,
      `${SOCKET_DIR}/socket.${this.controlPort}.lock`,
    ]) {
      rmSync(f, { force: true });
    }
  }
}
