export { Asc, Op, SenseKey, Status, TaskManagementFunction, TaskManagementResponse } from './constants.js';
export { FIXED_SENSE_LENGTH, fixedSense, ScsiError } from './sense.js';
export { nexusKey, type ScsiLogger, ScsiTarget, type ScsiTargetOptions } from './target.js';
export type { ExecuteOptions, ItNexus, ScsiResult } from './types.js';
