import type { Redis } from 'ioredis';
import type { DurableScripts } from './durable-scripts.js';
import type { ResolvedDurableOptions } from './durable-options.js';
import { streamFeatures, withoutFeature } from './server-features.js';

/** What one trim did. */
export interface TrimResult {
  /** Entries deleted. */
  readonly trimmed: number;
  /** Entries with a smaller id than this were eligible (`undefined`: nothing was eligible). */
  readonly threshold: string | undefined;
  /** The policy asked for more, but a group had not acknowledged those entries yet. */
  readonly heldBackByUnacknowledged: boolean;
}

/** Most entries one trim looks at to find the length boundary; a longer excess is trimmed over several runs. */
const SCAN_LIMIT = 10_000;

/**
 * Trims one stream by `maxLength` / `maxAge`, never past an entry that a consumer group has not
 * acknowledged (or not even received yet). Runs as one script, so no acknowledgement or delivery
 * can slip in between the check and the XTRIM; on Redis 8.2 and later the server's `XTRIM … ACKED`
 * does the keeping.
 */
export async function trimStream(
  connection: Redis & DurableScripts,
  stream: string,
  options: Pick<ResolvedDurableOptions, 'maxLength' | 'maxAge' | 'approximateTrim'>,
  now: number = Date.now(),
): Promise<TrimResult> {
  const byAge = options.maxAge === undefined ? '' : `${Math.max(0, now - options.maxAge)}-0`;
  const mode = options.approximateTrim ? '~' : '=';
  let reply: [number, string, number] | undefined;
  if ((await streamFeatures(connection)).trimAcked) {
    try {
      reply = await connection.rbDurableTrimAcked(stream, byAge, options.maxLength, mode, SCAN_LIMIT);
    } catch (error) {
      // A node without XTRIM ACKED after all (an older replica promoted, a cluster mid-upgrade):
      // the script failed before it trimmed anything; use the 7.0 script from now on.
      if (!(error instanceof Error && /^ERR\b/.test(error.message) && /ACKED|syntax/i.test(error.message))) throw error;
      withoutFeature(connection, 'trimAcked');
    }
  }
  const [trimmed, threshold, held] = reply ?? (await connection.rbDurableTrim(stream, byAge, options.maxLength, mode, SCAN_LIMIT));
  return { trimmed: Number(trimmed), threshold: threshold === '' ? undefined : threshold, heldBackByUnacknowledged: Number(held) === 1 };
}
