import type { StreamWaiter } from './durable-connection.js';
import { checkSettings } from './durable-settings.js';
import { sleep, type ConsumerContext, type Subscription } from './held-entries.js';

/** How long one XREAD waits for new entries before looking again. */
const BLOCK_MS = 5000;
/** Pause after a failed Redis command before the read loop tries again. */
const ERROR_PAUSE_MS = 250;

/** What the read loop is doing, for the shutdown's report when it does not stop in time. */
export type ReaderState = 'starting' | 'full' | 'fetching' | 'blocking' | 'pausing';

/**
 * The read loop: fetches new entries for each subscription (the FETCH script, which also registers
 * them for ordering) while the instance has room, and blocks in XREAD on its own connection when
 * nothing is new. It only hands entries over (`take`); what happens to them is the runner's.
 */
export class DurableReader {
  state: ReaderState = 'starting';
  private readonly lastSeen = new Map<string, string>();
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly context: ConsumerContext,
    private readonly subscriptions: readonly Subscription[],
    private readonly blocking: StreamWaiter,
    /** Entries the reader may fetch now (0: full). */
    private readonly room: () => number,
    /** `fetchedAt`: when the FETCH that read it was sent. */
    /** `sizeInRedis`: set for an entry over maxPayloadBytes, of which FETCH sent only the small fields. */
    private readonly take: (subscription: Subscription, id: string, fields: string[], fetchedAt: number, sizeInRedis: number | undefined) => void,
    /** Run after groups were created again because Redis lost them (its data was wiped): registers the wildcard bindings again. */
    private readonly afterGroupsRecreated: () => Promise<unknown> = async () => undefined,
  ) {
    // An entry let go frees room: read again if the loop waits for that.
    context.held.onFinish(() => this.wakeUp());
  }

  /** Compares this instance's shared options with the ones recorded for each stream, warning on a difference, and records its own. */
  async checkSettings(): Promise<void> {
    const { context } = this;
    const seen = new Set<string>();
    for (const { keys, pattern } of this.subscriptions) {
      if (seen.has(keys.stream)) continue;
      seen.add(keys.stream);
      await checkSettings(context.command(), keys.settings, pattern, context.options.durable, context.options.instanceId, context.logger, 'consumer');
    }
  }

  /** Creates the consumer groups that do not exist yet. */
  async ensureGroups(): Promise<void> {
    const start = this.context.options.durable.newGroupStartsAt === 'beginning' ? '0' : '$';
    for (const subscription of this.subscriptions) {
      try {
        await this.context.command().xgroup('CREATE', subscription.keys.stream, subscription.group, start, 'MKSTREAM');
      } catch (error) {
        if (!(error instanceof Error && error.message.startsWith('BUSYGROUP'))) throw error;
      }
      if (!this.lastSeen.has(subscription.keys.stream)) this.lastSeen.set(subscription.keys.stream, '0-0');
    }
  }

  start(): void {
    this.loop = this.read();
  }

  /** Settles when the loop has stopped (after the consumer started stopping). */
  stopped(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private async read(): Promise<void> {
    const { context } = this;
    let first = 0;
    while (!context.stopping()) {
      try {
        if (this.room() <= 0) {
          this.state = 'full';
          await new Promise<void>((resolve) => (this.wake = resolve));
          continue;
        }
        let fetched = 0;
        // Start from a different subscription each round, so a busy one cannot starve the others.
        for (let index = 0; index < this.subscriptions.length && !context.stopping(); index++) {
          const subscription = this.subscriptions[(first + index) % this.subscriptions.length]!;
          const room = this.room();
          if (room <= 0) break;
          const { keys, group } = subscription;
          this.state = 'fetching';
          const fetchedAt = Date.now();
          const [entries, last] = await context.command().rbDurableFetch(keys.stream, keys.attempts(group), keys.order(group), group, context.name, room, context.options.maxPayloadBytes);
          this.lastSeen.set(keys.stream, last);
          context.stats.received += entries.length;
          fetched += entries.length;
          for (const [id, fields, sizeInRedis] of entries) this.take(subscription, id, fields, fetchedAt, sizeInRedis);
        }
        first++;
        if (fetched === 0 && !context.stopping()) {
          const streams = [...this.lastSeen.keys()];
          this.state = 'blocking';
          await this.blocking.read(streams, streams.map((stream) => this.lastSeen.get(stream)!), BLOCK_MS);
        }
      } catch (error) {
        if (context.stopping()) break;
        context.redisError('reading', error);
        if (error instanceof Error && error.message.startsWith('NOGROUP')) {
          await this.ensureGroups()
            .then(() => this.afterGroupsRecreated())
            .catch(() => undefined);
        }
        this.state = 'pausing';
        await sleep(ERROR_PAUSE_MS);
      }
    }
  }
}
