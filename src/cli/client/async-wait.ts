import type { Json } from './json.js';
import { RpcCallError, type RpcClient, TransportError } from './rpc-client.js';

export interface WaitOptions {
  /** Time between async_list polls, in milliseconds. */
  intervalMs?: number;
  onProgress?: (percent: number) => void;
}

/** One entry of async_list: [status, percent], status 0 while running or a negative error code. */
function entryOf(list: Json, id: number): [number, number] | undefined {
  if (list === null || typeof list !== 'object' || Array.isArray(list)) {
    throw new TransportError('protocol', `async_list answered ${typeof list}, expected an object`);
  }
  const entry = Object.hasOwn(list, String(id)) ? list[String(id)] : undefined;
  if (entry === undefined) return undefined;
  if (!Array.isArray(entry) || entry.length < 2) {
    throw new TransportError('protocol', `async_list entry for ${id} is malformed`);
  }
  return [Number(entry[0]), Number(entry[1])];
}

/**
 * Polls async_list until `id` is gone (success) or shows a negative status, which is thrown as an
 * RpcCallError with that status as its code.
 */
export async function waitForAsync(client: RpcClient, id: number, opts: WaitOptions = {}): Promise<void> {
  const intervalMs = opts.intervalMs ?? 250;
  for (;;) {
    const entry = entryOf(await client.call('async_list'), id);
    if (entry === undefined) return;
    const [status, percent] = entry;
    if (status < 0) throw new RpcCallError(status, `asynchronous operation ${id} failed (at ${percent}%)`);
    opts.onProgress?.(percent);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
