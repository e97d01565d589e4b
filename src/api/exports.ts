import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { initiatorName, lun, name, poolName } from '../rpc/params.js';
import { type MethodDef, method } from '../rpc/registry.js';

/** export_list, export_create, export_destroy. */
export function exportMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'export_list',
      params: z.strictObject({}),
      mutating: false,
      handler: () => array.exportList(),
    }),
    method({
      name: 'export_create',
      params: z.strictObject({ pool: poolName, vol: name, initiator_wwn: initiatorName, lun }),
      mutating: true,
      handler: (p) => array.exportCreate(p.pool, p.vol, p.initiator_wwn, p.lun),
    }),
    method({
      name: 'export_destroy',
      params: z.strictObject({ pool: poolName, vol: name, initiator_wwn: initiatorName }),
      mutating: true,
      handler: (p) => array.exportDestroy(p.pool, p.vol, p.initiator_wwn),
    }),
  ];
}
