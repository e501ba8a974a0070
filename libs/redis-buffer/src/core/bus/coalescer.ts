import { encodeBatch, encodeHeadedBatch } from '../wire/encode.js';

/** One envelope waiting to be published. `encode` runs at flush time, so the item may still change. */
export interface OutgoingEnvelope {
  /** Encoded size in bytes (an upper bound is fine). */
  readonly bytes: number;
  encode(): string;
  /** True when the envelope must no longer be sent (its request was cancelled or has failed). */
  readonly cancelled?: boolean;
  /**
   * Told the PUBLISH result of the batch that carried it, like a `PublishCallback`: an item that
   * needs the result implements this rather than passing a closure (one allocation less per message).
   */
  published?(error: Error | undefined, receivers: number): void;
  /**
   * Read after `encode()`: set when what it returned needs a head as its batch's first element (a
   * compact request: the head carries what a caller's requests share). Every item of one sender
   * that sets it sets the same head, so the batch takes the first.
   */
  readonly batchHead?: string | undefined;
}

/** Told the PUBLISH result of the batch that carried an envelope: Redis's receiver count, or the error. */
export type PublishCallback = (error: Error | undefined, receivers: number) => void;

export type PublishFunction = (channel: string, message: string) => Promise<number>;

interface PendingBatch {
  readonly channel: string;
  items: OutgoingEnvelope[];
  /** The callbacks passed to `enqueue`, only for the items that came with one. */
  callbacks: PublishCallback[] | undefined;
  bytes: number;
  /** The count at which this batch closes early (see `earlyBatchCount`); Infinity when it does not. */
  readonly early: number;
}

/** Up to this many receivers a batch is cut at `earlyBatchCount`; each further four (or part of four) add `earlyBatchCount` again. */
const RECEIVERS_PER_EARLY_STEP = 4;
/** Channels whose last receiver count is kept; past this the record starts over (it only shapes batches). */
const RECEIVER_RECORD_LIMIT = 1024;

export interface CoalescerLimits {
  readonly maxBatchBytes: number;
  readonly maxBatchCount: number;
  /**
   * A batch this large is published before the turn ends when none of this coalescer's PUBLISHes
   * is waiting for Redis's answer (see `Coalescer`); on a channel whose last PUBLISH reached more
   * than four receivers, this many for every four of them. Unset: batches close at the limits or
   * the turn's end.
   */
  readonly earlyBatchCount?: number;
}

/**
 * Coalesces every envelope bound for the same channel within one event-loop turn into one PUBLISH.
 *
 * Under load the cost of pub/sub is the number of Redis messages (redis-server writes one delivery
 * per subscriber per message), so this is where throughput comes from. At low load a batch is a
 * batch of one, flushed in the same turn's check phase (`setImmediate`), which costs microseconds.
 *
 * With `earlyBatchCount`, a batch that reaches it while no PUBLISH of this coalescer awaits Redis's
 * answer goes out at once, and the rest of the turn's envelopes make the next batch: Redis and the
 * receivers start on the first part while the sender is still producing the rest, so the processes
 * of a request's round trip work side by side instead of in turn. While a PUBLISH is outstanding
 * (Redis or the link is busy) batches grow to the limits as before, so under load the number of
 * messages, which is what Redis pays per subscriber, does not grow. A cut costs one more message
 * for every receiver (a delivery from Redis, a message to read, a batch of replies to send back)
 * while what it saves is the sender's time for one part: so the early count grows with the
 * receivers the channel's last PUBLISH reached, and with 16 instances a caller's 64 requests of a
 * turn go out as one message again.
 */
export class Coalescer {
  private pending = new Map<string, PendingBatch>();
  // The batch enqueued to last: replies to one caller's batch of requests all go to its inbox, and
  // comparing a string is cheaper than hashing it (strings fresh from JSON.parse carry no hash).
  private last: PendingBatch | undefined;
  private scheduled = false;
  // This coalescer's PUBLISHes sent and not yet answered.
  private outstanding = 0;
  // With an early count: each channel's receivers at its last answered PUBLISH.
  private readonly receiversOf = new Map<string, number>();

  constructor(
    private readonly publishMessage: PublishFunction,
    private readonly limits: CoalescerLimits,
    private readonly schedule: (flush: () => void) => void = (flush) => setImmediate(flush),
  ) {}

  /** Queues an envelope; `callback` learns the PUBLISH result of the batch that carries it. */
  enqueue(channel: string, item: OutgoingEnvelope, callback?: PublishCallback): void {
    let batch = this.last !== undefined && this.last.channel === channel ? this.last : this.pending.get(channel);
    if (batch !== undefined && (this.isFull(batch) || batch.bytes + item.bytes + 1 > this.limits.maxBatchBytes)) {
      this.pending.delete(channel);
      this.send(batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { channel, items: [], callbacks: undefined, bytes: 2, early: this.earlyCount(channel) };
      this.pending.set(channel, batch);
    }
    this.last = batch;
    batch.items.push(item);
    if (callback !== undefined) (batch.callbacks ??= []).push(callback);
    batch.bytes += item.bytes + 1;
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(() => this.flush());
    }
  }

  /**
   * Queues an already encoded envelope and resolves with the PUBLISH result of the batch that
   * carries it: Redis's receiver count, or the error.
   */
  publish(channel: string, encoded: string): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.enqueue(channel, { bytes: encoded.length, encode: () => encoded }, (error, receivers) => {
        if (error === undefined) resolve(receivers);
        else reject(error);
      });
    });
  }

  /** Publishes everything queued now. */
  flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    if (pending.size === 0) return;
    this.pending = new Map();
    this.last = undefined;
    for (const batch of pending.values()) this.send(batch);
  }

  /** How many envelopes wait for the next flush. */
  get queued(): number {
    let count = 0;
    for (const batch of this.pending.values()) count += batch.items.length;
    return count;
  }

  /** At the count limit, or (see `earlyBatchCount`) at the early count with nothing outstanding. */
  private isFull(batch: PendingBatch): boolean {
    const count = batch.items.length;
    return count >= this.limits.maxBatchCount || (count >= batch.early && this.outstanding === 0);
  }

  /** The early count for a batch to `channel`: `earlyBatchCount`, once more for every four receivers past four. */
  private earlyCount(channel: string): number {
    const early = this.limits.earlyBatchCount;
    if (early === undefined) return Infinity;
    const receivers = this.receiversOf.get(channel) ?? 0;
    return early * Math.max(1, Math.ceil(receivers / RECEIVERS_PER_EARLY_STEP));
  }

  private noteReceivers(channel: string, receivers: number): void {
    if (this.receiversOf.size >= RECEIVER_RECORD_LIMIT && !this.receiversOf.has(channel)) this.receiversOf.clear();
    this.receiversOf.set(channel, receivers);
  }

  private send(batch: PendingBatch): void {
    let message: string;
    try {
      const encoded: string[] = [];
      let head: string | undefined;
      for (const item of batch.items) {
        if (item.cancelled === true) continue;
        encoded.push(item.encode());
        head ??= item.batchHead;
      }
      // Everything in it was cancelled before the flush: nobody waits for its result.
      if (encoded.length === 0) return;
      message = head === undefined ? encodeBatch(encoded) : encodeHeadedBatch(head, encoded);
    } catch (error) {
      settle(batch, error as Error, 0);
      return;
    }
    this.outstanding++;
    this.publishMessage(batch.channel, message).then(
      (receivers) => {
        this.outstanding--;
        if (this.limits.earlyBatchCount !== undefined) this.noteReceivers(batch.channel, receivers);
        settle(batch, undefined, receivers);
      },
      (error: Error) => {
        this.outstanding--;
        settle(batch, error, 0);
      },
    );
  }
}

function settle(batch: PendingBatch, error: Error | undefined, receivers: number): void {
  for (const item of batch.items) item.published?.(error, receivers);
  if (batch.callbacks !== undefined) for (const callback of batch.callbacks) callback(error, receivers);
}
