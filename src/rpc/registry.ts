import type { z } from 'zod';
import { ErrorCode, TargetdError } from './errors.js';

/** Who is calling, for logs and per-call state. */
export interface CallContext {
  remote: string;
}

/** One API method: its parameter schema (a zod strict object) and handler. */
export interface MethodDef<S extends z.ZodType = z.ZodType> {
  name: string;
  params: S;
  /** Mutating calls get one structured log line each. */
  mutating: boolean;
  handler: (params: z.output<S>, ctx: CallContext) => Promise<unknown>;
  /** Parameter names whose values never reach a log. */
  secret?: string[];
}

/** Builds a method definition with the handler's params typed from the schema. */
export function method<S extends z.ZodType>(def: MethodDef<S>): MethodDef {
  return def as unknown as MethodDef;
}

/** Renders zod issues as one message naming each parameter and its problem (missing, unknown, wrong). */
function describeIssues(error: z.ZodError, params: Record<string, unknown>): string {
  return error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return issue.keys.map((k) => `unknown parameter '${k}'`).join('; ');
      }
      const param = issue.path.map(String).join('.') || '(params)';
      const top = issue.path[0];
      // Absent (or null for a required value) is "missing"; anything else present is a wrong value.
      if (typeof top === 'string' && (!Object.hasOwn(params, top) || params[top] === undefined)) {
        return `missing parameter '${param}'`;
      }
      return `invalid parameter '${param}': ${issue.message}`;
    })
    .join('; ');
}

/** The set of API methods, validating params once at the edge. */
export class MethodRegistry {
  private readonly methods = new Map<string, MethodDef>();

  register(...defs: MethodDef[]): void {
    for (const def of defs) {
      if (this.methods.has(def.name)) throw new Error(`method ${def.name} registered twice`);
      this.methods.set(def.name, def);
    }
  }

  get(name: string): MethodDef | undefined {
    return this.methods.get(name);
  }

  names(): string[] {
    return [...this.methods.keys()].sort();
  }

  /** Normalizes and validates raw JSON-RPC params for `name`; throws -32601/-32602. */
  parse(name: string, raw: unknown): { def: MethodDef; params: unknown } {
    const def = this.methods.get(name);
    if (!def) throw new TargetdError(ErrorCode.METHOD_NOT_FOUND, `method not found: ${name}`);
    let params: unknown = raw;
    // Upstream clients send no params as omitted, null, {} or [].
    if (params === undefined || params === null || (Array.isArray(params) && params.length === 0))
      params = {};
    if (Array.isArray(params)) {
      throw new TargetdError(
        ErrorCode.INVALID_PARAMS,
        'params must be an object of named parameters, not positional',
      );
    }
    if (typeof params !== 'object')
      throw new TargetdError(ErrorCode.INVALID_PARAMS, 'params must be an object');
    const result = def.params.safeParse(params);
    if (!result.success) {
      throw new TargetdError(
        ErrorCode.INVALID_PARAMS,
        describeIssues(result.error, params as Record<string, unknown>),
      );
    }
    return { def, params: result.data };
  }

  /** Validates and runs a method. */
  async call(name: string, raw: unknown, ctx: CallContext): Promise<unknown> {
    const { def, params } = this.parse(name, raw);
    const out = await def.handler(params, ctx);
    return out === undefined ? null : out;
  }
}

/** Copies params with secret fields replaced, for logs. */
export function redactParams(def: MethodDef | undefined, params: unknown): unknown {
  if (!def?.secret) return params;
  // Positional or malformed params cannot be matched to names: none of them may reach a log.
  if (!params || typeof params !== 'object' || Array.isArray(params)) return params == null ? params : '***';
  const out: Record<string, unknown> = { ...(params as Record<string, unknown>) };
  for (const k of def.secret) if (k in out && out[k] !== null && out[k] !== '') out[k] = '***';
  return out;
}
