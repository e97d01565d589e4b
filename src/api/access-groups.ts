import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { initiatorName, initType, lun, name, optional, poolName } from '../rpc/params.js';
import { type MethodDef, method } from '../rpc/registry.js';

const member = { ag_name: name, init_id: initiatorName, init_type: initType };

/** access_group_* methods (API 0.7). */
export function accessGroupMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'access_group_list',
      params: z.strictObject({}),
      mutating: false,
      handler: () => array.accessGroupList(),
    }),
    method({
      name: 'access_group_create',
      params: z.strictObject(member),
      mutating: true,
      handler: (p) => array.accessGroupCreate(p.ag_name, p.init_id),
    }),
    method({
      name: 'access_group_destroy',
      params: z.strictObject({ ag_name: name }),
      mutating: true,
      handler: (p) => array.accessGroupDestroy(p.ag_name),
    }),
    method({
      name: 'access_group_init_add',
      params: z.strictObject(member),
      mutating: true,
      handler: (p) => array.accessGroupInitAdd(p.ag_name, p.init_id),
    }),
    method({
      name: 'access_group_init_del',
      params: z.strictObject(member),
      mutating: true,
      handler: (p) => array.accessGroupInitDel(p.ag_name, p.init_id),
    }),
    method({
      name: 'access_group_map_list',
      params: z.strictObject({}),
      mutating: false,
      handler: () => array.accessGroupMapList(),
    }),
    method({
      name: 'access_group_map_create',
      params: z.strictObject({
        pool_name: poolName,
        vol_name: name,
        ag_name: name,
        h_lun_id: optional(lun),
      }),
      mutating: true,
      handler: (p) => array.accessGroupMapCreate(p.pool_name, p.vol_name, p.ag_name, p.h_lun_id),
    }),
    method({
      name: 'access_group_map_destroy',
      params: z.strictObject({ pool_name: poolName, vol_name: name, ag_name: name }),
      mutating: true,
      handler: (p) => array.accessGroupMapDestroy(p.pool_name, p.vol_name, p.ag_name),
    }),
  ];
}
