/** Upstream targetd error codes (api-reference.md) plus the JSON-RPC 2.0 ones. */
export const ErrorCode = {
  INVALID: -1,
  NAME_CONFLICT: -50,
  EXISTS_CLONE_NAME: -51,
  EXISTS_INITIATOR: -52,
  EXISTS_FS_NAME: -53,
  NOT_FOUND_VOLUME: -103,
  NOT_FOUND_FS: -104,
  INVALID_POOL: -110,
  NOT_FOUND_SS: -112,
  NOT_FOUND_VOLUME_EXPORT: -151,
  NOT_FOUND_VOLUME_GROUP: -152,
  NO_SUPPORT: -153,
  NOT_FOUND_ACCESS_GROUP: -200,
  VOLUME_MASKED: -303,
  NOT_FOUND_NFS_EXPORT: -400,
  NFS_NO_SUPPORT: -401,
  NO_FREE_HOST_LUN_ID: -1000,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  PARSE_ERROR: -32700,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The one error type the API raises; `code` is always negative and reaches the client unchanged. */
export class TargetdError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = 'TargetdError';
  }
}

/** Shorthand for a -32602 error that names the offending parameter. */
export function invalidParam(param: string, problem: string): TargetdError {
  return new TargetdError(ErrorCode.INVALID_PARAMS, `invalid parameter '${param}': ${problem}`);
}
