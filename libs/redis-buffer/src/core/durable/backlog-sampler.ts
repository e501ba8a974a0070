import type { ConsumerContext, Subscription } from './held-entries.js';

/** One group's backlog on one stream, as last sampled. */
export interface DurableBacklog {
  readonly pattern: string;
  readonly stream: string;
  readonly group: string;
  /** Entries of the stream not yet delivered to the group (XINFO GROUPS `lag`; `undefined` when Redis cannot tell, after a trim or a deletion). */
  readonly lag: number | undefined;
  /** Entries delivered to the group and not acknowledged yet (on any of its consumers). */
  readonly pending: number;
  /** Age, in ms since publication (its id's time), of the group's oldest pending entry; 0 when none is pending. */
  readonly oldestPendingAgeMs: number;
  /** When this sample was taken (ms since the epoch). */
  readonly sampledAt: number;
}

/**
 * Samples, for each stream and group this instance reads, how far the group is behind: what
 * monitoring needs to see a group stall or lag, read from Redis (so every consumer of the group
 * reports the same numbers), not from this instance's memory.
 */
export class BacklogSampler {
  private latest: DurableBacklog[] = [];
  private sampling = false;

  constructor(
    private readonly context: ConsumerContext,
    private readonly subscriptions: readonly Subscription[],
  ) {}

  get backlog(): readonly DurableBacklog[] {
    return this.latest;
  }

  async sample(): Promise<readonly DurableBacklog[]> {
    const { context } = this;
    if (this.sampling || context.stopping()) return this.latest;
    this.sampling = true;
    try {
      const samples: DurableBacklog[] = [];
      for (const subscription of this.subscriptions) {
        const { keys, group, pattern } = subscription;
        const command = context.command();
        const groups = (await command.xinfo('GROUPS', keys.stream)) as unknown[][];
        const info = groups.map(fieldsOf).find((fields) => fields.name === group);
        const summary = (await command.xpending(keys.stream, group)) as [number, string | null, string | null, unknown];
        const oldest = summary[1];
        const now = Date.now();
        samples.push({
          pattern,
          stream: keys.stream,
          group,
          lag: typeof info?.lag === 'number' ? info.lag : undefined,
          pending: Number(summary[0]),
          oldestPendingAgeMs: oldest === null ? 0 : Math.max(0, now - Number(oldest.slice(0, oldest.indexOf('-')))),
          sampledAt: now,
        });
      }
      this.latest = samples;
    } catch (error) {
      context.redisError('sampling the backlog', error);
    } finally {
      this.sampling = false;
    }
    return this.latest;
  }
}

function fieldsOf(list: unknown[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (let index = 0; index + 1 < list.length; index += 2) fields[String(list[index])] = list[index + 1];
  return fields;
}
