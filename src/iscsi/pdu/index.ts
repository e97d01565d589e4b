export * from './constants.js';
export * from './decode.js';
export * from './encode.js';
export * from './errors.js';
export * from './lun.js';
export type * from './types.js';
