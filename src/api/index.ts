import type { StorageArray } from '../core/array.js';
import { MethodRegistry } from '../rpc/registry.js';
import { accessGroupMethods } from './access-groups.js';
import { asyncMethods } from './async.js';
import { exportMethods } from './exports.js';
import { initiatorMethods } from './initiators.js';
import { poolMethods } from './pools.js';
import { volumeMethods } from './volumes.js';

/** Every API method, bound to one array. */
export function buildRegistry(array: StorageArray): MethodRegistry {
  const r = new MethodRegistry();
  r.register(
    ...poolMethods(array),
    ...volumeMethods(array),
    ...exportMethods(array),
    ...initiatorMethods(array),
    ...accessGroupMethods(array),
    ...asyncMethods(array),
  );
  return r;
}
