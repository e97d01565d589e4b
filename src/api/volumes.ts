import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { name, optional, poolName, size } from '../rpc/params.js';
import { type MethodDef, method } from '../rpc/registry.js';

/** vol_list, vol_create, vol_destroy, vol_copy, vol_resize. */
export function volumeMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'vol_list',
      params: z.strictObject({ pool: poolName }),
      mutating: false,
      handler: (p) => array.volList(p.pool),
    }),
    method({
      name: 'vol_create',
      params: z.strictObject({ pool: poolName, name, size }),
      mutating: true,
      handler: (p) => array.volCreate(p.pool, p.name, p.size),
    }),
    method({
      name: 'vol_destroy',
      params: z.strictObject({ pool: poolName, name }),
      mutating: true,
      handler: (p) => array.volDestroy(p.pool, p.name),
    }),
    method({
      name: 'vol_copy',
      params: z.strictObject({ pool: poolName, vol_orig: name, vol_new: name, size: optional(size) }),
      mutating: true,
      handler: (p) => array.volCopy(p.pool, p.vol_orig, p.vol_new, p.size),
    }),
    method({
      name: 'vol_resize',
      params: z.strictObject({ pool: poolName, name, size }),
      mutating: true,
      handler: (p) => array.volResize(p.pool, p.name, p.size),
    }),
  ];
}
