import { readFile, stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import type { Command } from 'commander';
import { buildRegistry } from '../api/index.js';
import { ConfigError, type LoadedConfig, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { StorageArray } from '../core/array.js';
import { BuiltinExportBackend } from '../exports/builtin/index.js';
import { NoExportBackend } from '../exports/none.js';
import type { ExportBackend } from '../exports/types.js';
import { createLogger, type Logger } from '../log.js';
import { FilePool } from '../pools/file/file-pool.js';
import type { BlockPool } from '../pools/types.js';
import { createRpcServer } from '../server/rpc-server.js';
import { LockHeldError } from '../store/lock.js';
import { StateCorruptError, StateStore } from '../store/state-store.js';

/** Raised for start-up problems that deserve a one-line message, not a stack trace. */
class StartupError extends Error {}

/** Reads the TLS pair, refusing a private key that group or others can read. */
async function loadTls(config: Config): Promise<{ cert: Buffer; key: Buffer }> {
  let mode: number;
  try {
    mode = (await stat(config.ssl_key)).mode;
  } catch (e) {
    throw new StartupError(`ssl_key: cannot read ${config.ssl_key}: ${(e as Error).message}`);
  }
  if (mode & 0o077) {
    throw new StartupError(
      `ssl_key: ${config.ssl_key} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  let pair: { cert: Buffer; key: Buffer };
  try {
    pair = { cert: await readFile(config.ssl_cert), key: await readFile(config.ssl_key) };
  } catch (e) {
    throw new StartupError(`ssl_cert/ssl_key: ${(e as Error).message}`);
  }
  try {
    createSecureContext(pair);
  } catch (e) {
    throw new StartupError(
      `ssl_cert/ssl_key: ${config.ssl_cert} and ${config.ssl_key} are not a usable PEM certificate and key: ${(e as Error).message}`,
    );
  }
  return pair;
}

function createBackend(config: Config, log: Logger): ExportBackend {
  switch (config.iscsi_backend) {
    case 'none':
      return new NoExportBackend();
    case 'builtin':
      return new BuiltinExportBackend({
        targetName: config.target_name,
        portalAddresses: config.portal_addresses,
        port: config.iscsi_port,
        stateDir: config.state_dir,
        logger: log,
        headerDigest: config.iscsi_header_digest,
        dataDigest: config.iscsi_data_digest,
      });
    default:
      throw new StartupError(`iscsi_backend: '${config.iscsi_backend}' is not available in this build`);
  }
}

/** Starts the daemon; resolves once it serves, with a function that stops it. */
export async function startDaemon(loaded: LoadedConfig, log: Logger): Promise<() => Promise<void>> {
  const { config } = loaded;
  for (const w of loaded.warnings) log.warn(w);
  log.info({ config: loaded.source }, `targetd starting with config ${loaded.source}`);
  if (loaded.embedded) {
    log.info(
      { data_dir: loaded.embedded.dataDir },
      `embedded default: data in ${loaded.embedded.dataDir} (state, pool 'default', password file)`,
    );
    if (config.iscsi_backend === 'builtin') {
      log.info(
        { portal: config.portal_addresses, iscsi_port: config.iscsi_port },
        `embedded default: iSCSI portal ${config.portal_addresses.join(', ')}:${config.iscsi_port}` +
          (config.iscsi_port === 3260 ? '' : ' (3260 needs root)'),
      );
    }
  }
  const tls = config.ssl ? await loadTls(config) : undefined;

  const store = new StateStore(config.state_dir);
  await store.open().catch((e: Error) => {
    if (e instanceof LockHeldError || e instanceof StateCorruptError) throw e;
    throw new StartupError(`state_dir: cannot use ${config.state_dir}: ${e.message}`);
  });
  const pools: BlockPool[] = [];
  for (const pc of config.file_pools) {
    const p = new FilePool({
      name: pc.name,
      path: pc.path,
      sizeCap: pc.size,
      copyRateLimit: config.copy_rate_limit || undefined,
      logger: log,
    });
    await p.open().catch((e: Error) => {
      throw new StartupError(`file_pools: pool '${pc.name}' at ${pc.path}: ${e.message}`);
    });
    const s = await p.stats();
    log.info(
      { pool: p.name, kind: p.kind, path: pc.path, size: s.size, free_size: s.free_size },
      `pool ${p.name} ready`,
    );
    pools.push(p);
  }
  if (pools.length === 0) log.warn('no pools configured: add file_pools to the config');
  const backend = createBackend(config, log);
  log.info({ iscsi_backend: backend.name }, `iSCSI data plane: ${backend.name}`);
  const array = new StorageArray({
    pools,
    store,
    backend,
    targetName: config.target_name,
    asyncAfter: config.async_after,
    logger: log,
  });
  await array.start();
  await backend.start?.();
  const server = createRpcServer({
    registry: buildRegistry(array),
    user: config.user,
    password: config.password,
    tls,
    logger: log,
  });
  const addr = await server.listen(config.rpc_address, config.rpc_port).catch((e: NodeJS.ErrnoException) => {
    throw new StartupError(
      `rpc_address/rpc_port: cannot listen on ${config.rpc_address}:${config.rpc_port}: ${e.message}`,
    );
  });
  const scheme = tls ? 'https' : 'http';
  const host = addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `${scheme}://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${addr.port}/targetrpc`;
  log.info(
    { address: addr.address, port: addr.port, tls: !!tls, url, user: config.user },
    `API listening on ${scheme}://${host}:${addr.port}/targetrpc (user ${config.user}, password ${
      loaded.embedded ? `in ${loaded.embedded.passwordFile}` : `from ${loaded.source}`
    })`,
  );
  if (loaded.embedded) {
    const pw = loaded.embedded.newPassword;
    // Printed once, on stdout, so it does not end up in structured log collectors.
    process.stdout.write(
      `\ntargetd is running: ${url}\n  user: ${config.user}\n  password: ${pw ?? `(in ${loaded.embedded.passwordFile})`}\n` +
        `  try: curl -u ${config.user}:${pw ?? `$(cat ${loaded.embedded.passwordFile})`} -d '{"jsonrpc":"2.0","id":1,"method":"pool_list"}' ${url}\n\n`,
    );
  }
  return async () => {
    // Stop taking requests first, then abort copies: a call waiting on a copy must not hold up shutdown.
    const closing = server.close();
    await array.stop();
    await closing;
    // With no call in progress, close the pools: each first finishes making its recent copies durable.
    await Promise.all(pools.map((p) => p.close?.()));
    await store.close();
  };
}

/** Adds `targetd serve`. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run the daemon (without --config: /etc/target/targetd.yaml, else the embedded default)')
    .option('-c, --config <file>', 'configuration file (YAML)')
    .action(async (opts: { config?: string }, cmd: Command) => {
      // The client's connection flags are the root command's too, but say nothing to the daemon.
      const given = cmd.parent?.options.filter(
        (o) => cmd.parent?.getOptionValueSource(o.attributeName()) === 'cli',
      );
      if (given && given.length > 0) {
        process.stderr.write(
          `targetd: ${given.map((o) => o.long).join(', ')} ${given.length > 1 ? 'are' : 'is'} for the client commands; ` +
            'the daemon takes its settings from its config file (serve --config FILE)\n',
        );
        process.exit(2);
      }
      let loaded: LoadedConfig;
      try {
        loaded = await loadConfig(opts.config);
      } catch (e) {
        if (e instanceof ConfigError) {
          process.stderr.write(`targetd: config error: ${e.message}\n`);
          process.exit(2);
        }
        throw e;
      }
      const log = createLogger(loaded.config.log_level);
      let stop: () => Promise<void>;
      try {
        stop = await startDaemon(loaded, log);
      } catch (e) {
        if (e instanceof StartupError || e instanceof LockHeldError || e instanceof StateCorruptError) {
          log.fatal(e.message);
          process.stderr.write(`targetd: ${e.message}\n`);
          process.exit(1);
        }
        if (
          (e as NodeJS.ErrnoException).code === 'EADDRINUSE' ||
          (e as NodeJS.ErrnoException).code === 'EACCES'
        ) {
          log.fatal(`cannot listen: ${(e as Error).message}`);
          process.stderr.write(`targetd: cannot listen: ${(e as Error).message}\n`);
          process.exit(1);
        }
        throw e;
      }
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'shutting down');
        stop().then(
          () => process.exit(0),
          (err) => {
            log.error({ err }, 'error during shutdown');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
    });
}
