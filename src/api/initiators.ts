import { z } from 'zod';
import type { StorageArray } from '../core/array.js';
import { invalidParam } from '../rpc/errors.js';
import { chapField, initiatorName, looseBool, NAME_RE, optional } from '../rpc/params.js';
import { type MethodDef, method } from '../rpc/registry.js';

const chapUser = chapField.refine((u) => u === null || u === '' || NAME_RE.test(u), {
  error: 'may contain only A-Z, a-z, 0-9, _ and - (1-127 characters)',
});

/** initiator_set_auth, initiator_list. */
export function initiatorMethods(array: StorageArray): MethodDef[] {
  return [
    method({
      name: 'initiator_set_auth',
      params: z.strictObject({
        initiator_wwn: initiatorName,
        in_user: chapUser.optional().default(null),
        in_pass: chapField.optional().default(null),
        out_user: chapUser.optional().default(null),
        out_pass: chapField.optional().default(null),
      }),
      mutating: true,
      secret: ['in_pass', 'out_pass'],
      handler: async (p) => {
        if (p.in_user && p.out_user && p.in_user === p.out_user && p.in_pass === p.out_pass) {
          // RFC 7143 §12.1.3: the two directions must not share a secret.
          throw invalidParam('out_pass', 'must differ from in_pass for mutual CHAP');
        }
        return array.initiatorSetAuth(p.initiator_wwn, p);
      },
    }),
    method({
      name: 'initiator_list',
      params: z.strictObject({ standalone_only: optional(looseBool).transform((v) => v ?? false) }),
      mutating: false,
      handler: (p) => array.initiatorList(p.standalone_only),
    }),
  ];
}
