import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { type MethodDef, method } from '../rpc/registry.js';

/** pool_list. */
export function poolMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'pool_list',
      params: z.strictObject({}),
      mutating: false,
      handler: () => array.poolList(),
    }),
  ];
}
