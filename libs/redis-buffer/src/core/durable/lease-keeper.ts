import { groupBySubscription, handledKeyOf, type ConsumerContext, type Held, type Subscription } from './held-entries.js';
import { keysThenArgs } from './durable-scripts.js';

/**
 * Keeps this instance's hold on its entries, the way a job queue's lock manager does:
 * - renews what it holds every `claimIdle / 3` (the TOUCH script resets the idle time, so no other
 *   instance claims what this one is working on) and drops what another instance took meanwhile;
 * - claims entries idle longer than `claimIdle` from instances that stopped renewing (XAUTOCLAIM);
 * - releases entries at shutdown (idle time set to `claimIdle`: claimable at once by the others).
 */
export class LeaseKeeper {
  private claiming = false;
  private touching = false;
  /** When the command connection last came back after a loss (0: never lost). */
  private reconnectedAt = 0;

  constructor(
    private readonly context: ConsumerContext,
    private readonly subscriptions: readonly Subscription[],
    /** Entries the claimer may take now. */
    private readonly room: () => number,
    private readonly take: (subscription: Subscription, id: string, fields: string[]) => void,
  ) {}

  /**
   * Back from a lost connection (a Redis restart, a network cut): renew what this instance holds at
   * once, and claim nothing for claimIdle. The other instances were probably cut off too, so their
   * entries look idle although they are still working on them; they get claimIdle to renew.
   */
  onReconnected(): void {
    this.reconnectedAt = Date.now();
    void this.renewAll();
  }

  /** Claims entries that other instances (or this one, before a restart) stopped renewing. */
  async claimAll(): Promise<void> {
    const { context } = this;
    if (this.claiming || context.stopping()) return;
    const { claimIdle } = context.options.durable;
    if (Date.now() - this.reconnectedAt < claimIdle) return;
    this.claiming = true;
    try {
      for (const subscription of this.subscriptions) {
        const room = this.room();
        if (room <= 0 || context.stopping()) break;
        const { keys, group } = subscription;
        const [cursor, entries, deleted] = (await context.command().xautoclaim(keys.stream, group, context.name, claimIdle, subscription.claimCursor, 'COUNT', room)) as [
          string,
          Array<[string, string[]] | null>,
          string[] | undefined,
        ];
        subscription.claimCursor = cursor;
        if (deleted !== undefined && deleted.length > 0) {
          context.stats.deletedWhilePending += deleted.length;
          context.logger.error(`${deleted.length} pending entries of "${subscription.pattern}" (group "${group}") were deleted from the stream before being handled (an XTRIM or XDEL outside this library?): ${deleted.slice(0, 5).join(', ')}${deleted.length > 5 ? '…' : ''}`);
        }
        for (const entry of entries) {
          if (entry === null || !Array.isArray(entry[1])) continue;
          const [id, fields] = entry;
          if (context.held.has(subscription, id)) continue;
          context.stats.claimed++;
          this.take(subscription, id, fields);
        }
      }
    } catch (error) {
      context.redisError('claiming idle entries', error);
    } finally {
      this.claiming = false;
    }
  }

  /** Renews every entry held; drops those another instance claimed (a running handler still finishes). */
  async renewAll(): Promise<void> {
    const { context } = this;
    // Also while stopping: handlers still finishing keep their leases until close() gives up on them.
    if (this.touching || context.held.size === 0) return;
    this.touching = true;
    try {
      // While stopping, only running entries: the others are being released, and renewing one after
      // its release would make it wait claimIdle again.
      const held = [...context.held.values()].filter((entry) => entry.running || !context.stopping());
      for (const [subscription, entries] of groupBySubscription(held)) {
        const lost = await this.touch(subscription, entries, 0, context.options.durable.claimIdle);
        for (const id of lost) {
          const held = context.held.get(subscription, id);
          if (held === undefined) continue;
          context.stats.lost++;
          // A running handler finishes (its acknowledgement will be refused); it is told to stop.
          if (held.running) held.abort.abort();
          else context.held.finish(held);
        }
      }
    } catch (error) {
      context.redisError('renewing held entries', error);
    } finally {
      this.touching = false;
    }
  }

  /** Hands entries back to the group: claimable by any instance at its next look. */
  async release(entries: readonly Held[]): Promise<void> {
    if (entries.length === 0) return;
    const { context } = this;
    // Let go here first: whether or not Redis hears of it, they are no longer this instance's
    // (unreleased, they are claimable after claimIdle anyway).
    for (const held of entries) context.held.finish(held);
    for (const [subscription, group] of groupBySubscription(entries)) {
      try {
        await this.touch(subscription, group, context.options.durable.claimIdle, 0);
        context.stats.released += group.length;
      } catch (error) {
        context.redisError('releasing held entries', error);
      }
    }
  }

  private touch(subscription: Subscription, entries: readonly Held[], idleMs: number, leaseMs: number): Promise<string[]> {
    const handled: string[] = [];
    const args: Array<string | number> = [subscription.group, this.context.name, idleMs, leaseMs];
    for (const held of entries) {
      const key = handledKeyOf(held);
      // KEYS[1] is the stream: the first handled marker is KEYS[2].
      if (key !== undefined) handled.push(key);
      args.push(held.id, key === undefined ? 0 : handled.length + 1, held.token);
    }
    return this.context.command().rbDurableTouch(...keysThenArgs([subscription.keys.stream, ...handled], [], args));
  }
}
