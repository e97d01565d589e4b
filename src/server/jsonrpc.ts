import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { ErrorCode, TargetdError } from '../rpc/errors.js';
import { type CallContext, type MethodRegistry, redactParams } from '../rpc/registry.js';
import { poisonLossyNumbers } from './lossy-numbers.js';
import { scanRawIds } from './raw-id.js';

/** Everything a JSON-RPC dispatch needs besides the body. */
export interface DispatchOptions {
  registry: MethodRegistry;
  logger: Logger;
  ctx: CallContext;
}

interface RpcErrorBody {
  code: number;
  message: string;
  data?: unknown;
}

const NULL_ID = 'null';

/** Serializes one reply; `rawId` is spliced in verbatim so the id keeps its exact source text. */
function reply(rawId: string, outcome: { result: unknown } | { error: RpcErrorBody }): string {
  if ('error' in outcome) {
    const { code, message, data } = outcome.error;
    let error: string;
    try {
      error = JSON.stringify(data === undefined ? { code, message } : { code, message, data });
    } catch {
      // Unserializable data must not cost the client its error.
      error = JSON.stringify({ code, message });
    }
    return `{"jsonrpc":"2.0","id":${rawId},"error":${error}}`;
  }
  // JSON.stringify yields undefined for undefined/functions: the method is then void.
  const result = JSON.stringify(outcome.result) ?? 'null';
  return `{"jsonrpc":"2.0","id":${rawId},"result":${result}}`;
}

function errorReply(rawId: string, code: number, message: string): string {
  return reply(rawId, { error: { code, message } });
}

/** Turns anything thrown into an error body; only TargetdError's code and message reach the client. */
function toErrorBody(err: unknown): RpcErrorBody {
  if (err instanceof TargetdError) {
    return err.data === undefined
      ? { code: err.code, message: err.message }
      : { code: err.code, message: err.message, data: err.data };
  }
  if (err instanceof Error) return { code: ErrorCode.INVALID, message: `${err.name}: ${err.message}` };
  let text: string;
  try {
    text = String(err);
  } catch {
    text = 'unprintable value';
  }
  return { code: ErrorCode.INVALID, message: `Error: ${text}` };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isValidId(v: unknown): boolean {
  return v === null || typeof v === 'string' || typeof v === 'number';
}

/** Runs one request element; returns its reply text, or null for a notification. */
async function dispatchOne(
  request: unknown,
  rawId: string | undefined,
  opts: DispatchOptions,
): Promise<string | null> {
  if (!isPlainObject(request))
    return errorReply(NULL_ID, ErrorCode.INVALID_REQUEST, 'request must be an object');
  const hasId = Object.hasOwn(request, 'id');
  if (hasId && !isValidId(request.id)) {
    return errorReply(NULL_ID, ErrorCode.INVALID_REQUEST, 'id must be a string, a number or null');
  }
  // The scanner and JSON.parse agree on which member is "id"; the fallback is belt and braces.
  const idText = hasId ? (rawId ?? JSON.stringify(request.id)) : NULL_ID;
  if (request.jsonrpc !== '2.0') {
    return errorReply(idText, ErrorCode.INVALID_REQUEST, 'jsonrpc must be "2.0"');
  }
  if (typeof request.method !== 'string') {
    return errorReply(idText, ErrorCode.INVALID_REQUEST, 'method must be a string');
  }

  const name = request.method;
  const def = opts.registry.get(name);
  const started = performance.now();
  let outcome: { result: unknown } | { error: RpcErrorBody };
  let parsedParams: unknown = request.params;
  try {
    const parsed = opts.registry.parse(name, request.params);
    parsedParams = parsed.params;
    const result = await parsed.def.handler(parsed.params, opts.ctx);
    outcome = { result: result === undefined ? null : result };
  } catch (err) {
    outcome = { error: toErrorBody(err) };
    if (!(err instanceof TargetdError)) {
      // The stack stays here; the client only gets "Name: message".
      opts.logger.error({ err, method: name, remote: opts.ctx.remote }, 'unexpected error in method');
    }
  }

  let text: string;
  try {
    text = reply(idText, outcome);
  } catch (err) {
    // A result JSON cannot express (a BigInt, a cycle) is a server bug, reported like any other.
    opts.logger.error({ err, method: name, remote: opts.ctx.remote }, 'unserializable result');
    outcome = { error: toErrorBody(err) };
    text = reply(idText, outcome);
  }

  if (def?.mutating) {
    opts.logger.info(
      {
        method: name,
        params: redactParams(def, parsedParams),
        outcome: 'error' in outcome ? outcome.error.code : 'ok',
        ms: Math.round((performance.now() - started) * 1000) / 1000,
        remote: opts.ctx.remote,
      },
      'rpc call',
    );
  }
  return hasId ? text : null;
}

/**
 * Handles one JSON-RPC 2.0 body (a request or a batch, UTF-8); returns the reply text, or
 * null when nothing is to be sent back (only notifications).
 */
export async function dispatchBody(raw: Buffer | string, opts: DispatchOptions): Promise<string | null> {
  let body: string;
  try {
    // fatal: bytes that are not UTF-8 are a parse error, not silently replaced characters.
    body = typeof raw === 'string' ? raw : new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return errorReply(NULL_ID, ErrorCode.PARSE_ERROR, 'parse error: body is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(poisonLossyNumbers(body));
  } catch (err) {
    return errorReply(NULL_ID, ErrorCode.PARSE_ERROR, `parse error: ${(err as Error).message}`);
  }
  const scan = scanRawIds(body);

  if (!Array.isArray(parsed)) {
    return dispatchOne(parsed, scan.kind === 'object' ? scan.id : undefined, opts);
  }
  if (parsed.length === 0) return errorReply(NULL_ID, ErrorCode.INVALID_REQUEST, 'empty batch');
  const rawIds = scan.kind === 'array' ? scan.ids : [];
  const replies: string[] = [];
  // In order, one after another: a batch may create a volume and then export it.
  for (let i = 0; i < parsed.length; i++) {
    const text = await dispatchOne(parsed[i], rawIds[i], opts);
    if (text !== null) replies.push(text);
  }
  return replies.length === 0 ? null : `[${replies.join(',')}]`;
}
