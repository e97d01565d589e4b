export { IscsiConnection, type SessionInfo } from './connection.js';
export { BufferCursor, encodeDataInParts } from './data-in.js';
export { IscsiTarget, type IscsiTargetOptions } from './target.js';
export {
  type ConnectionInfo,
  type ConnectionTransport,
  DEFAULT_SESSION_LIMITS,
  type IscsiLogger,
  type LoginThrottleLike,
  NULL_LOGGER,
  type ScsiExecutor,
  type SessionLimits,
} from './types.js';
