import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { type MethodDef, method } from '../rpc/registry.js';

/** async_list (seed). */
export function asyncMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'async_list',
      params: z.strictObject({}),
      mutating: false,
      handler: () => array.asyncList(),
    }),
  ];
}
