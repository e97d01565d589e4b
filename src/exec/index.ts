import { spawn } from 'node:child_process';
import { ErrorCode, TargetdError } from '../rpc/errors.js';

/** Options for {@link run}. */
export interface RunOptions {
  /** Kill the child (SIGKILL) after this many ms; default 60 000. */
  timeoutMs?: number;
  /** Written to the child's stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Buffer;
  /** Secrets replaced by `***` in error messages (the command line and stderr both can carry them). */
  redact?: string[];
  /** Exit codes that count as success; default [0]. Lets callers branch on e.g. "not found" exits. */
  okCodes?: number[];
  /** Extra environment variables, on top of the daemon's own. */
  env?: Record<string, string>;
  /** Output beyond this many bytes per stream kills the child and fails the run; default 64 MiB. */
  maxOutputBytes?: number;
}

/** What a finished command produced. */
export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

// Upstream targetd reused -303 for failed backend commands; api-reference.md keeps that, command in the message.
const COMMAND_FAILED = ErrorCode.VOLUME_MASKED;
const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024;
// Long stderr (e.g. a tool dumping its usage) would bury the message clients see; the log keeps the rest.
const MAX_MESSAGE_STDERR = 2000;

/** Replaces every occurrence of each non-empty secret in `text` with `***`. */
export function redactText(text: string, secrets: readonly string[] | undefined): string {
  if (!secrets) return text;
  let out = text;
  // Longest first, so a secret that contains another is not left half-visible.
  for (const s of [...secrets].filter((x) => x.length > 0).sort((a, b) => b.length - a.length)) {
    out = out.split(s).join('***');
  }
  return out;
}

/** The command line as shown in messages: argv joined by spaces, arguments with blanks quoted. */
function describe(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].map((a) => (a === '' || /[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}

/**
 * Runs `cmd` with `args` (never through a shell) and resolves with its output; a spawn error, a timeout or an
 * exit code outside `okCodes` rejects with TargetdError(-303, "<cmd args> failed: <reason>"), secrets redacted.
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const okCodes = opts.okCodes ?? [0];
  const maxOutput = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT;
  const fail = (reason: string): TargetdError =>
    new TargetdError(COMMAND_FAILED, redactText(`${describe(cmd, args)} failed: ${reason}`, opts.redact));

  return new Promise<RunResult>((resolve, reject) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, {
        shell: false,
        stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      });
    } catch (err) {
      // spawn throws synchronously for bad arguments (e.g. a NUL byte in an argument).
      reject(fail((err as Error).message));
      return;
    }

    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let failure: string | undefined;
    let settled = false;

    const kill = (why: string): void => {
      failure ??= why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(`timed out after ${timeoutMs} ms`), timeoutMs);

    child.stdout?.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > maxOutput) kill(`stdout exceeded ${maxOutput} bytes`);
      else out.push(b);
    });
    child.stderr?.on('data', (b: Buffer) => {
      errBytes += b.length;
      if (errBytes > maxOutput) kill(`stderr exceeded ${maxOutput} bytes`);
      else err.push(b);
    });

    if (opts.input !== undefined && child.stdin) {
      // EPIPE when the child exits without reading its input; the exit status tells the real story.
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input);
    }

    child.on('error', (e) => {
      // 'error' without a later 'close' happens when the process could not be spawned at all.
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(fail(e.message));
    });

    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (failure !== undefined) {
        reject(fail(failure));
      } else if (code === null) {
        reject(fail(`killed by ${signal}${stderr.trim() ? `: ${truncate(stderr.trim())}` : ''}`));
      } else if (!okCodes.includes(code)) {
        reject(fail(stderr.trim() ? truncate(stderr.trim()) : `exit code ${code}`));
      } else {
        resolve({ stdout, stderr, code });
      }
    });
  });
}

function truncate(s: string): string {
  return s.length > MAX_MESSAGE_STDERR ? `${s.slice(0, MAX_MESSAGE_STDERR)}…` : s;
}
