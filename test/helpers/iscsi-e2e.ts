/**
 * What the end-to-end iSCSI tests share: a daemon running the built-in target, and real initiators
 * (libiscsi's tools, qemu-io over libiscsi) run as child processes.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { type DaemonHandle, freePort, startDaemon } from './daemon.js';

/** A finished tool run: its exit code (null when it was killed, e.g. at the timeout) and its output. */
export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool with an argument array and a timeout; never throws. */
export function run(cmd: string, args: string[], timeoutMs = 30_000, env?: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      // libiscsi's debug output (LIBISCSI_DEBUG) runs past execFile's 1 MiB default.
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, env },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : null
          : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** Whether every one of the tools is on the PATH. */
export async function toolsInstalled(tools: string[]): Promise<boolean> {
  const found = await Promise.all(tools.map(async (t) => (await run('which', [t])).code === 0));
  return found.every(Boolean);
}

/** A daemon serving the built-in iSCSI target, and its portal port. */
export interface IscsiDaemon {
  d: DaemonHandle;
  port: number;
}

/**
 * Starts a daemon whose built-in target `target` listens on a free port at 127.0.0.1; `config` adds or
 * overrides keys (e.g. more portal_addresses).
 */
export async function startIscsiDaemon(
  target: string,
  config: Record<string, unknown> = {},
): Promise<IscsiDaemon> {
  const port = await freePort();
  const d = await startDaemon({
    config: {
      iscsi_backend: 'builtin',
      iscsi_port: port,
      portal_addresses: ['127.0.0.1'],
      target_name: target,
      ...config,
    },
  });
  return { d, port };
}

/** One LUN as qemu-io reaches it: the target at 127.0.0.1:port, logged in as `initiator`. */
export interface QemuLun {
  port: number;
  target: string;
  lun: number;
  initiator: string;
}

/** Runs qemu-io commands on a LUN through libiscsi; `extra` appends image options (`,header-digest=none`). */
export function runQemuIo(at: QemuLun, cmds: string[], extra = ''): Promise<Run> {
  return run('qemu-io', [
    '--image-opts',
    `driver=iscsi,transport=tcp,portal=127.0.0.1:${at.port},target=${at.target},lun=${at.lun},initiator-name=${at.initiator}${extra}`,
    ...cmds.flatMap((c) => ['-c', c]),
  ]);
}

/** Asserts that a qemu-io run exited 0 and reported no failed verification or other error. */
export function assertQemuOk(r: Run, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stdout + r.stderr, /verification failed|error|failed/i, what);
}
