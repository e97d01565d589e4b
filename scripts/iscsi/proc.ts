/**
 * Process plumbing shared by the iSCSI conformance and performance harnesses: running tools with argv arrays and
 * timeouts, and a synchronous last-resort cleanup so that every process we started (tgtd, the daemon, test tools)
 * is ended by its PID even when the harness is interrupted or crashes.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

type Cleanup = () => void;
const cleanups = new Set<Cleanup>();
let installed = false;

function runCleanups(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // One failing cleanup must not keep the others (and their PIDs) from running.
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  // 'exit' handlers may only do synchronous work, which is why cleanups are synchronous.
  process.on('exit', runCleanups);
  for (const [sig, no] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: stopping the processes this harness started\n`);
      runCleanups();
      process.exit(128 + no);
    });
  }
}

/** Registers a synchronous cleanup run on exit or on a signal; returns its unregister function. */
export function onAbort(fn: Cleanup): () => void {
  install();
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

export function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * SIGKILLs a child we spawned, but only while Node still considers it running: once it has been reaped its PID may
 * belong to an unrelated process.
 */
export function killChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid !== undefined && alive(child)) {
    try {
      process.kill(child.pid, signal);
    } catch {
      // Already gone between the check and the kill.
    }
  }
}

/** Waits for a child to exit, escalating from `first` to SIGKILL after graceMs. */
export async function stopChild(child: ChildProcess, first: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!alive(child)) return;
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  killChild(child, first);
  const timer = setTimeout(() => killChild(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

/** Runs a command (argv array, no shell) to completion, capturing its output; never throws on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  timeoutMs = 60_000,
  env?: Record<string, string>,
): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((ok, fail) => {
    const child = execFile(
      cmd,
      args,
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        encoding: 'utf8',
        env: env ? { ...process.env, ...env } : process.env,
      },
      (err, stdout, stderr) => {
        off();
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          fail(new Error(`${cmd}: not found (is its package installed?)`));
          return;
        }
        ok({
          code: child.exitCode,
          signal: child.signalCode,
          stdout,
          stderr,
          timedOut: !!err && (err as { killed?: boolean }).killed === true && child.signalCode === 'SIGKILL',
          ms: performance.now() - t0,
        });
      },
    );
    const off = onAbort(() => killChild(child));
  });
}

/** Like run() but throws with the command and its stderr unless it exits 0. */
export async function runOk(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${timeoutMs} ms` : `exit ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${(r.stderr || r.stdout).trim()}`);
  }
  return r.stdout;
}

/**
 * Runs a command with stdout and stderr both going to one file through a single descriptor, so that lines keep the
 * order the tool wrote them in (the parser depends on a skip/fail message staying inside its test's block).
 */
export function runToFile(
  cmd: string,
  args: string[],
  outFile: string,
  timeoutMs: number,
): Promise<Omit<RunResult, 'stdout' | 'stderr'>> {
  const t0 = performance.now();
  const fd = openSync(outFile, 'w');
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const off = onAbort(() => killChild(child));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killChild(child);
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      off();
      fail((e as NodeJS.ErrnoException).code === 'ENOENT' ? new Error(`${cmd}: not found`) : e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      off();
      ok({ code, signal, timedOut, ms: performance.now() - t0 });
    });
  });
}

let clkTck: number | undefined;

function ticksPerSecond(): number {
  try {
    const n = Number.parseInt(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim(), 10);
    if (n > 0) return n;
  } catch {
    // USER_HZ is 100 on every Linux we run on; getconf is only there to be exact.
  }
  return 100;
}

/** utime+stime of a process (all its threads) in seconds, from /proc/<pid>/stat fields 14 and 15. */
export function cpuSeconds(pid: number): number {
  clkTck ??= ticksPerSecond();
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm (field 2) is in parentheses and may itself contain spaces or ')', so split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3, so fields 14 and 15 are rest[11] and rest[12].
  return (Number(rest[11]) + Number(rest[12])) / clkTck;
}
