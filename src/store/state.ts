import { z } from 'zod';

const chap = z.object({
  in_user: z.string().nullable(),
  in_pass: z.string().nullable(),
  out_user: z.string().nullable(),
  out_pass: z.string().nullable(),
});

/** A direct export: one volume to one initiator at one LUN. */
const exportEntry = z.object({
  initiator_wwn: z.string(),
  lun: z.number(),
  pool: z.string(),
  vol: z.string(),
});
/** A volume mapped to every member of an access group at one LUN. */
const agMap = z.object({ ag_name: z.string(), h_lun_id: z.number(), pool: z.string(), vol: z.string() });
/** An async copy in progress, journaled so a crash is reported once after restart. */
const job = z.object({ pool: z.string(), src: z.string(), dst: z.string(), started: z.string() });
const failure = z.object({ code: z.number(), message: z.string(), percent: z.number() });

/** The state file, version 1: the export registry (desired iSCSI state) and the async-job journal. */
export const stateSchema = z.object({
  version: z.literal(1),
  exports: z.array(exportEntry),
  auth: z.record(z.string(), chap),
  // An array, not a map: group names like 'constructor' or '__proto__' are valid and must not meet
  // Object.prototype.
  access_groups: z.array(z.object({ name: z.string(), init_ids: z.array(z.string()) })),
  ag_maps: z.array(agMap),
  jobs: z.record(z.string(), job),
  failed_jobs: z.record(z.string(), failure),
  next_async_id: z.number().int().positive(),
});

export type State = z.output<typeof stateSchema>;
export type ExportEntry = State['exports'][number];
export type AgMap = State['ag_maps'][number];
export type ChapState = z.output<typeof chap>;

/** A fresh, empty registry. */
export function emptyState(): State {
  return {
    version: 1,
    exports: [],
    auth: {},
    access_groups: [],
    ag_maps: [],
    jobs: {},
    failed_jobs: {},
    next_async_id: 1,
  };
}
