import { type Command, InvalidArgumentError, Option } from 'commander';
import { formatSize } from '../../sizes.js';
import { parseCallArgs, sizeValue, UsageError } from './args.js';
import { waitForAsync } from './async-wait.js';
import { DEFAULT_URL, normalizeUrl, resolvePassword } from './connection.js';
import { type Json, stringifyJson } from './json.js';
import { ProgressReporter } from './progress.js';
import { RpcCallError, RpcClient, TransportError } from './rpc-client.js';
import { type Column, formatTable } from './table.js';

const CONNECTION_GROUP = 'Connection and output options:';
const COMMANDS_GROUP = 'API client commands:';
const DEFAULT_TIMEOUT_S = 60;

/** Flags every client command accepts (commander camel-cases them). */
interface ClientFlags {
  url: string;
  user: string;
  password?: string;
  passwordFile?: string;
  insecure?: boolean;
  json?: boolean;
  timeout: number;
  bytes?: boolean;
}

/** What a command handler works with: a connected client and the output conventions. */
class Context {
  constructor(
    readonly client: RpcClient,
    readonly flags: ClientFlags,
  ) {}

  get json(): boolean {
    return this.flags.json === true;
  }

  /** Writes text to stdout. */
  out(text: string): void {
    process.stdout.write(text);
  }

  /** Writes a value as indented JSON with exact big integers. */
  outJson(value: unknown): void {
    this.out(`${stringifyJson(value, 2)}\n`);
  }

  /** A byte count for a table cell: human units, or exact bytes with --bytes. */
  size(v: Json | undefined): string {
    if ((typeof v === 'number' || typeof v === 'bigint') && !this.flags.bytes) return formatSize(v);
    return cell(v);
  }

  /** A list result as a table, or as JSON with --json. */
  table(result: Json, columns: readonly Column[], row: (r: Record<string, Json>) => string[]): void {
    if (this.json) this.outJson(result);
    else this.out(formatTable(columns, records(result).map(row)));
  }

  /** A void method's answer: nothing, or `null` with --json. */
  done(result: Json): void {
    if (this.json) this.outJson(result);
  }
}

/** A table cell for any JSON value; absent values show as `-`. */
function cell(v: Json | undefined): string {
  if (v === undefined || v === null || v === '') return '-';
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.length ? v.map(cell).join(',') : '-';
  if (typeof v === 'object') return stringifyJson(v);
  return String(v);
}

/** A list answer as records; anything else means the daemon does not speak this API. */
function records(result: Json): Record<string, Json>[] {
  if (
    !Array.isArray(result) ||
    !result.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r))
  ) {
    throw new TransportError('protocol', `expected a list of objects, got ${stringifyJson(result)}`);
  }
  return result as Record<string, Json>[];
}

/** A LUN argument: a non-negative integer (the daemon checks the 0–255 range). */
function parseLun(text: string, what = 'LUN'): number {
  if (!/^\d+$/.test(text)) {
    throw new UsageError(`${what} must be a non-negative integer, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

// The longest delay a Node timer takes (2^31 - 1 ms), in whole seconds.
const MAX_TIMEOUT_S = Math.floor((2 ** 31 - 1) / 1000);

/** Parses --timeout: decimal seconds, fractions allowed, 0 for no limit. */
function parseTimeout(text: string): number {
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text)) {
    throw new InvalidArgumentError('expected a number of seconds, like 30 or 2.5 (0: no limit)');
  }
  const n = Number(text);
  if (n > MAX_TIMEOUT_S) {
    throw new InvalidArgumentError(`at most ${MAX_TIMEOUT_S} seconds (0: no limit)`);
  }
  return n;
}

/** Adds --url, --user, --password, --password-file, --insecure, --json and --timeout, with their env vars. */
function addConnectionOptions(cmd: Command): Command {
  const opts = [
    new Option('--url <url>', 'daemon URL, host or host:port').env('TARGETD_URL').default(DEFAULT_URL),
    new Option('--user <user>', 'API user').env('TARGETD_USER').default('admin'),
    new Option('--password <password>', 'API password').env('TARGETD_PASSWORD'),
    new Option('--password-file <file>', 'read the password from a file').env('TARGETD_PASSWORD_FILE'),
    new Option('--insecure', 'accept a self-signed or otherwise untrusted TLS certificate'),
    new Option('--json', 'print the raw JSON result'),
    new Option('--timeout <seconds>', 'give up on a request after this long (0: never)')
      .argParser(parseTimeout)
      .default(DEFAULT_TIMEOUT_S),
  ];
  for (const o of opts) cmd.addOption(o.helpGroup(CONNECTION_GROUP));
  return cmd;
}

/** A leaf command's connection flags and which of them were given on the command line. */
interface ResolvedFlags {
  flags: ClientFlags;
  fromCli: (key: keyof ClientFlags) => boolean;
}

/**
 * The connection flags of `leaf`. They may come before the subcommand too (`targetd --url X vol list`, as
 * with git or kubectl): a flag given on the command line anywhere beats the environment and defaults, and
 * one given after the subcommand beats one given before it.
 */
function resolveFlags(leaf: Command): ResolvedFlags {
  const flags = { ...leaf.opts<ClientFlags>() };
  const cli = new Set<string>();
  // Every option the leaf has, including those with neither a value nor a default.
  for (const key of leaf.options.map((o) => o.attributeName()) as (keyof ClientFlags)[]) {
    if (leaf.getOptionValueSource(key) === 'cli') {
      cli.add(key);
      continue;
    }
    for (let c = leaf.parent; c; c = c.parent) {
      if (c.getOptionValueSource(key) === 'cli') {
        (flags as Record<string, unknown>)[key] = c.getOptionValue(key);
        cli.add(key);
        break;
      }
    }
  }
  return { flags, fromCli: (key) => cli.has(key) };
}

/** Picks the password source: a flag beats the environment; two sources of the same kind are an error. */
async function passwordFor({ flags, fromCli }: ResolvedFlags): Promise<string> {
  let { password, passwordFile } = flags;
  if (password !== undefined && passwordFile !== undefined) {
    const pwFromCli = fromCli('password');
    const fileFromCli = fromCli('passwordFile');
    if (pwFromCli && !fileFromCli) passwordFile = undefined;
    if (fileFromCli && !pwFromCli) password = undefined;
  }
  return resolvePassword({ password, passwordFile });
}

/** Builds a client from the command's flags. */
async function connect(resolved: ResolvedFlags): Promise<RpcClient> {
  const { flags } = resolved;
  return new RpcClient({
    url: normalizeUrl(flags.url),
    user: flags.user,
    password: await passwordFor(resolved),
    insecure: flags.insecure === true,
    timeoutMs: flags.timeout * 1000,
  });
}

/** Prints a failure the way every command does: `error <code>: <message>` for API errors. */
function report(e: unknown): void {
  if (e instanceof RpcCallError) {
    process.stderr.write(`error ${e.code}: ${e.message}\n`);
  } else if (e instanceof Error) {
    process.stderr.write(`error: ${e.message}\n`);
    if (!(e instanceof UsageError || e instanceof TransportError) && process.env.TARGETD_DEBUG) {
      process.stderr.write(`${e.stack}\n`);
    }
  } else {
    process.stderr.write(`error: ${String(e)}\n`);
  }
}

/** Leaf commands made so far; they get the connection options last, so their own options lead their help. */
const leaves: Command[] = [];

type Handler = (ctx: Context, args: string[], cmd: Command) => Promise<void>;

/** Adds a leaf client command whose action runs `handler` with a connected client and uniform error exits. */
function leaf(parent: Command, spec: string, description: string, handler: Handler): Command {
  const cmd = parent.command(spec).description(description);
  leaves.push(cmd);
  cmd.action(async (...raw: unknown[]) => {
    const self = raw.at(-1) as Command;
    let client: RpcClient | undefined;
    try {
      const resolved = resolveFlags(self);
      client = await connect(resolved);
      await handler(new Context(client, resolved.flags), self.args, self);
    } catch (e) {
      report(e);
      // exitCode rather than exit(): stdout may still be draining into a pipe.
      process.exitCode = 1;
    } finally {
      client?.close();
    }
  });
  return cmd;
}

/** Group commands made so far; they take the connection flags too (`targetd vol --url X list`). */
const groups: Command[] = [];

/** A command that only groups subcommands. */
function group(parent: Command, name: string, description: string): Command {
  const cmd = parent.command(name).description(description);
  groups.push(cmd);
  return cmd;
}

/**
 * Polls an async id with a progress display on stderr. Ctrl-C stops only the waiting: the daemon carries on,
 * so say where to look instead of leaving the user to guess whether the operation was cancelled.
 */
async function waitWithProgress(ctx: Context, id: number, label: string): Promise<void> {
  const progress = new ProgressReporter(label, process.stderr);
  const onInterrupt = (): void => {
    progress.finish(false);
    process.stderr.write(`interrupted: async id ${id} goes on in the daemon (see: targetd async list)\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    await waitForAsync(ctx.client, id, { onProgress: (p) => progress.update(p) });
  } catch (e) {
    progress.finish(false);
    throw e;
  } finally {
    process.removeListener('SIGINT', onInterrupt);
  }
  progress.finish(true);
}

/** Waits for an async id with progress on stderr, then checks that the copy's volume really exists. */
async function waitForCopy(ctx: Context, id: number, pool: string, src: string, dst: string): Promise<void> {
  await waitWithProgress(ctx, id, `copy ${pool}/${src} -> ${dst}`);
  // A failure is listed by async_list only once; if another client polled it first, the id just vanishes.
  const vols = records(await ctx.client.call('vol_list', { pool }));
  if (!vols.some((v) => v.name === dst)) {
    throw new Error(
      `asynchronous copy ${id} ended but ${pool}/${dst} does not exist (its failure was likely reported to another client)`,
    );
  }
}

const SIZE_HELP = `
SIZE is bytes or a human size (case-insensitive): K, M, G, T, P alone or with i/iB are binary
(10G = 10Gi = 10GiB = 10*2^30); KB, MB, GB, TB, PB are decimal (10GB = 10*10^9). Fractions are
rounded up to whole bytes (1.5G = 1610612736).`;

/** Adds the API client subcommands (`call` and friends). */
export function registerClientCommands(program: Command): void {
  const top: Command[] = [];

  top.push(
    leaf(
      program,
      'call <method> [params...]',
      'call any API method; params as key=value or key:=JSON',
      async (ctx, args, cmd) => {
        const [method, ...rest] = args;
        const params = parseCallArgs(rest);
        try {
          ctx.outJson(await ctx.client.call(method!, params));
        } catch (e) {
          if (!(e instanceof RpcCallError && e.isAsyncId)) throw e;
          if (!cmd.opts().wait) {
            process.stderr.write(
              `${method} continues in the background as async id ${e.code} (see: targetd async list)\n`,
            );
            ctx.outJson({ async_id: e.code });
            return;
          }
          await waitWithProgress(ctx, e.code, `${method} (async ${e.code})`);
          ctx.outJson(null);
        }
      },
    )
      .option('--wait', 'if the method continues asynchronously, wait for it with progress on stderr')
      .addHelpText(
        'after',
        `
Values: integers are sent as JSON numbers (big ones digit for digit), true/false/null as JSON, text
starting with { or [ as JSON, anything else as a string. key:=JSON sends raw JSON (key:='"007"' for a
string of digits). For the key 'size', human sizes are accepted.
${SIZE_HELP}

Examples:
  targetd call pool_list
  targetd call vol_create pool=pool1 name=vol1 size=10G
  targetd call initiator_list standalone_only=true`,
      ),
  );

  top.push(
    (() => {
      const pool = group(program, 'pool', 'storage pools');
      leaf(pool, 'list', 'list pools', async (ctx) => {
        const result = await ctx.client.call('pool_list');
        const withUuid = !ctx.json && records(result).some((p) => p.uuid !== undefined);
        const columns: Column[] = [
          { header: 'NAME' },
          { header: 'TYPE' },
          { header: 'SIZE', align: 'right' },
          { header: 'FREE', align: 'right' },
          ...(withUuid ? [{ header: 'UUID' }] : []),
        ];
        ctx.table(result, columns, (p) => [
          cell(p.name),
          cell(p.type),
          ctx.size(p.size),
          ctx.size(p.free_size),
          ...(withUuid ? [cell(p.uuid)] : []),
        ]);
      }).option('--bytes', 'print sizes in exact bytes');
      return pool;
    })(),
  );

  top.push(
    (() => {
      const vol = group(program, 'vol', 'volumes');
      leaf(vol, 'list <pool>', 'list the volumes of a pool', async (ctx, [pool]) => {
        const result = await ctx.client.call('vol_list', { pool });
        ctx.table(
          result,
          [{ header: 'NAME' }, { header: 'SIZE', align: 'right' }, { header: 'UUID' }],
          (v) => [cell(v.name), ctx.size(v.size), cell(v.uuid ?? v.UUID)],
        );
      }).option('--bytes', 'print sizes in exact bytes');
      leaf(vol, 'create <pool> <name> <size>', 'create a volume', async (ctx, [pool, name, size]) => {
        ctx.done(await ctx.client.call('vol_create', { pool, name, size: sizeValue(size!) }));
      }).addHelpText('after', SIZE_HELP);
      leaf(vol, 'destroy <pool> <name>', 'destroy a volume and its data', async (ctx, [pool, name]) => {
        ctx.done(await ctx.client.call('vol_destroy', { pool, name }));
      });
      leaf(
        vol,
        'copy <pool> <src> <dst>',
        'copy a volume to a new one, waiting for a background copy to finish',
        async (ctx, [pool, src, dst], cmd) => {
          const opts = cmd.opts<{ size?: string; wait: boolean }>();
          const size = opts.size === undefined ? undefined : sizeValue(opts.size);
          try {
            ctx.done(await ctx.client.call('vol_copy', { pool, vol_orig: src, vol_new: dst, size }));
          } catch (e) {
            if (!(e instanceof RpcCallError && e.isAsyncId)) throw e;
            if (!opts.wait) {
              if (ctx.json) ctx.outJson({ async_id: e.code });
              else ctx.out(`${e.code}\n`);
              return;
            }
            await waitForCopy(ctx, e.code, pool!, src!, dst!);
            ctx.done(null);
          }
        },
      )
        .option('--size <size>', 'make the copy this large (must exceed the original)')
        .option('--no-wait', 'if the copy goes to the background, print its async id and return')
        .addHelpText('after', SIZE_HELP);
      leaf(vol, 'resize <pool> <name> <size>', 'grow a volume', async (ctx, [pool, name, size]) => {
        ctx.done(await ctx.client.call('vol_resize', { pool, name, size: sizeValue(size!) }));
      }).addHelpText('after', SIZE_HELP);
      return vol;
    })(),
  );

  top.push(
    (() => {
      const exp = group(program, 'export', 'exports of volumes to initiators');
      leaf(exp, 'list', 'list exports (access-group mappings appear once per member)', async (ctx) => {
        const result = await ctx.client.call('export_list');
        ctx.table(
          result,
          [
            { header: 'INITIATOR' },
            { header: 'LUN', align: 'right' },
            { header: 'POOL' },
            { header: 'VOLUME' },
            { header: 'SIZE', align: 'right' },
          ],
          (x) => [
            cell(x.initiator_wwn),
            cell(x.lun),
            cell(x.pool),
            cell(x.vol_name ?? x.vol),
            ctx.size(x.vol_size),
          ],
        );
      }).option('--bytes', 'print sizes in exact bytes');
      leaf(
        exp,
        'create <pool> <vol> <initiator> <lun>',
        'export a volume to an initiator as a LUN',
        async (ctx, [pool, vol, initiator, lun]) => {
          ctx.done(
            await ctx.client.call('export_create', {
              pool,
              vol,
              initiator_wwn: initiator,
              lun: parseLun(lun!),
            }),
          );
        },
      );
      leaf(
        exp,
        'destroy <pool> <vol> <initiator>',
        'remove an export',
        async (ctx, [pool, vol, initiator]) => {
          ctx.done(await ctx.client.call('export_destroy', { pool, vol, initiator_wwn: initiator }));
        },
      );
      return exp;
    })(),
  );

  top.push(
    (() => {
      const init = group(program, 'initiator', 'iSCSI initiators and their CHAP credentials');
      leaf(init, 'list', 'list initiators', async (ctx, _args, cmd) => {
        const standalone = cmd.opts<{ standaloneOnly?: boolean }>().standaloneOnly;
        const result = await ctx.client.call('initiator_list', standalone ? { standalone_only: true } : {});
        ctx.table(result, [{ header: 'INITIATOR' }, { header: 'TYPE' }], (i) => [
          cell(i.init_id),
          cell(i.init_type),
        ]);
      }).option('--standalone-only', 'only initiators that are not in an access group');
      leaf(
        init,
        'set-auth <initiator>',
        'set CHAP credentials; a direction left out is disabled',
        async (ctx, [initiator], cmd) => {
          const o = cmd.opts<{ inUser?: string; inPass?: string; outUser?: string; outPass?: string }>();
          const direction = (user: string | undefined, pass: string | undefined, flag: string): void => {
            if ((user === undefined) !== (pass === undefined)) {
              throw new UsageError(`--${flag}-user and --${flag}-pass go together`);
            }
            if (pass !== undefined && pass.length < 12) {
              process.stderr.write(
                `warning: --${flag}-pass is shorter than 12 characters; many initiators refuse it\n`,
              );
            }
          };
          direction(o.inUser, o.inPass, 'in');
          direction(o.outUser, o.outPass, 'out');
          ctx.done(
            await ctx.client.call('initiator_set_auth', {
              initiator_wwn: initiator,
              in_user: o.inUser ?? null,
              in_pass: o.inPass ?? null,
              out_user: o.outUser ?? null,
              out_pass: o.outPass ?? null,
            }),
          );
        },
      )
        .option('--in-user <user>', 'CHAP user the initiator logs in with')
        .option('--in-pass <secret>', 'CHAP secret the initiator logs in with')
        .option('--out-user <user>', 'mutual CHAP: user the target answers with')
        .option('--out-pass <secret>', 'mutual CHAP: secret the target answers with');
      return init;
    })(),
  );

  top.push(
    (() => {
      const ag = group(program, 'ag', 'access groups (sets of initiators that share LUN mappings)');
      leaf(ag, 'list', 'list access groups', async (ctx) => {
        const result = await ctx.client.call('access_group_list');
        ctx.table(result, [{ header: 'NAME' }, { header: 'TYPE' }, { header: 'INITIATORS' }], (g) => [
          cell(g.name),
          cell(g.init_type),
          cell(g.init_ids),
        ]);
      });
      leaf(
        ag,
        'create <name> <initiator>',
        'create an access group with its first initiator',
        async (ctx, [name, init]) => {
          ctx.done(
            await ctx.client.call('access_group_create', {
              ag_name: name,
              init_id: init,
              init_type: 'iscsi',
            }),
          );
        },
      );
      leaf(ag, 'destroy <name>', 'destroy an access group', async (ctx, [name]) => {
        ctx.done(await ctx.client.call('access_group_destroy', { ag_name: name }));
      });
      leaf(
        ag,
        'add <name> <initiator>',
        'add an initiator (creates the group if missing)',
        async (ctx, [name, init]) => {
          ctx.done(
            await ctx.client.call('access_group_init_add', {
              ag_name: name,
              init_id: init,
              init_type: 'iscsi',
            }),
          );
        },
      );
      leaf(ag, 'remove <name> <initiator>', 'remove an initiator from a group', async (ctx, [name, init]) => {
        ctx.done(
          await ctx.client.call('access_group_init_del', {
            ag_name: name,
            init_id: init,
            init_type: 'iscsi',
          }),
        );
      });
      const map = group(ag, 'map', 'volumes mapped to access groups');
      leaf(map, 'list', 'list access-group mappings', async (ctx) => {
        const result = await ctx.client.call('access_group_map_list');
        ctx.table(
          result,
          [{ header: 'GROUP' }, { header: 'LUN', align: 'right' }, { header: 'POOL' }, { header: 'VOLUME' }],
          (m) => [cell(m.ag_name), cell(m.h_lun_id), cell(m.pool_name), cell(m.vol_name)],
        );
      });
      leaf(
        map,
        'create <pool> <vol> <group>',
        'map a volume to an access group (lowest free LUN unless --lun)',
        async (ctx, [pool, vol, ag], cmd) => {
          const lun = cmd.opts<{ lun?: string }>().lun;
          ctx.done(
            await ctx.client.call('access_group_map_create', {
              pool_name: pool,
              vol_name: vol,
              ag_name: ag,
              h_lun_id: lun === undefined ? undefined : parseLun(lun, '--lun'),
            }),
          );
        },
      ).option('--lun <n>', 'host LUN to use');
      leaf(
        map,
        'destroy <pool> <vol> <group>',
        'unmap a volume from an access group',
        async (ctx, [pool, vol, ag]) => {
          ctx.done(
            await ctx.client.call('access_group_map_destroy', {
              pool_name: pool,
              vol_name: vol,
              ag_name: ag,
            }),
          );
        },
      );
      return ag;
    })(),
  );

  top.push(
    (() => {
      const asy = group(program, 'async', 'background operations');
      leaf(asy, 'list', 'list running (and just-failed) background operations', async (ctx) => {
        const result = await ctx.client.call('async_list');
        if (ctx.json) {
          ctx.outJson(result);
          return;
        }
        if (result === null || typeof result !== 'object' || Array.isArray(result)) {
          throw new TransportError(
            'protocol',
            `async_list answered ${stringifyJson(result)}, expected an object`,
          );
        }
        const rows = Object.entries(result)
          .sort(([a], [b]) => Number(a) - Number(b))
          .map(([id, entry]) => {
            const [status, percent] = Array.isArray(entry) ? entry : [entry, undefined];
            const state = Number(status) < 0 ? `failed (${status})` : 'running';
            return [id, state, percent === undefined ? '-' : `${cell(percent)}%`];
          });
        ctx.out(
          formatTable(
            [{ header: 'ID', align: 'right' }, { header: 'STATE' }, { header: 'PROGRESS', align: 'right' }],
            rows,
          ),
        );
      });
      return asy;
    })(),
  );

  for (const cmd of top) cmd.helpGroup(COMMANDS_GROUP);
  for (const cmd of leaves.splice(0)) addConnectionOptions(cmd);
  // Also before the subcommand (at any level); positional, so that after it they are the subcommand's own.
  for (const cmd of [program, ...groups.splice(0)]) addConnectionOptions(cmd).enablePositionalOptions();
}
