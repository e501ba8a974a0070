// The floors: a minimal hand-written scatter-gather on plain ioredis, the least any Redis
// pub/sub scatter-gather can do. One PUBLISH per request to one channel, every responder
// answers on the caller's one inbox channel, replies are routed by id through a Map, and
// Redis's PUBLISH result says how many replies to wait for.
// `coalesce` turns on per-tick batching: every request bound for the request channel, and every
// reply bound for one inbox, within one event-loop turn goes out as one PUBLISH of a JSON array.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { HOLD_PATTERN, REPLY_DATA } from '../common.js';
import type { CallerSystem, Done, ResponderGroup } from './types.js';
import { countPublishes, type KindCounts } from '../publish-tally.js';

export interface WireRequest {
  id: string;
  p: string;
  replyTo: string;
  data: unknown;
}

interface WireReply {
  id: string;
  from: string;
  data: unknown;
}

interface Pending {
  expected: number;
  got: number;
  done: Done;
}

/** What a floor publishes through: an ioredis connection, or anything that takes a PUBLISH. */
export interface FloorPublisher {
  publish(channel: string, message: string): Promise<number>;
}

/** Per-tick batching of strings per channel into one PUBLISH of a JSON array. */
class TickBatcher {
  private pending = new Map<string, { parts: string[]; callbacks: Array<((error: unknown, receivers: number) => void) | undefined> }>();
  private scheduled = false;

  constructor(private readonly redis: FloorPublisher) {}

  enqueue(channel: string, encoded: string, callback?: (error: unknown, receivers: number) => void): void {
    let batch = this.pending.get(channel);
    if (batch === undefined) {
      batch = { parts: [], callbacks: [] };
      this.pending.set(channel, batch);
    }
    batch.parts.push(encoded);
    batch.callbacks.push(callback);
    if (batch.parts.length >= 256) {
      this.pending.delete(channel);
      this.send(channel, batch);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const pending = this.pending;
    this.pending = new Map();
    for (const [channel, batch] of pending) this.send(channel, batch);
  }

  private send(channel: string, batch: { parts: string[]; callbacks: Array<((error: unknown, receivers: number) => void) | undefined> }): void {
    this.redis.publish(channel, `[${batch.parts.join(',')}]`).then(
      (receivers) => {
        for (const callback of batch.callbacks) callback?.(undefined, receivers);
      },
      (error: unknown) => {
        for (const callback of batch.callbacks) callback?.(error, 0);
      },
    );
  }
}

export class FloorCaller implements CallerSystem {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly inbox: string;
  private readonly requestChannel: string;
  private readonly pending = new Map<string, Pending>();
  private readonly prefix = randomBytes(4).toString('hex');
  private readonly batcher: TickBatcher | undefined;
  private nextId = 0;

  constructor(
    url: string,
    namespace: string,
    private readonly coalesce: boolean,
    /** Where coalesced requests go instead of the connection (a measurement without Redis). */
    publisher?: FloorPublisher,
  ) {
    this.pub = new Redis(url, { lazyConnect: true });
    this.sub = new Redis(url, { lazyConnect: true });
    this.inbox = `${namespace}:inbox:${this.prefix}`;
    this.requestChannel = `${namespace}:req`;
    this.batcher = coalesce ? new TickBatcher(publisher ?? this.pub) : undefined;
  }

  async start(): Promise<void> {
    await Promise.all([this.pub.connect(), this.sub.connect()]);
    this.sub.on('message', (_channel: string, message: string) => this.receive(message));
    await this.sub.subscribe(this.inbox);
  }

  /** One message of the inbox: a reply, or a batch of them. */
  receive(message: string): void {
    const parsed = JSON.parse(message) as WireReply | WireReply[];
    if (Array.isArray(parsed)) for (const reply of parsed) this.onReply(reply);
    else this.onReply(parsed);
  }

  countPublishes(): KindCounts {
    return countPublishes(this.pub, this.sub);
  }

  request(_n: number, pattern: string, data: unknown, done: Done): void {
    const id = `${this.prefix}${(this.nextId++).toString(36)}`;
    const entry: Pending = { expected: -1, got: 0, done };
    this.pending.set(id, entry);
    const encoded = JSON.stringify({ id, p: pattern, replyTo: this.inbox, data } satisfies WireRequest);
    const onPublished = (error: unknown, receivers: number): void => {
      if (!this.pending.has(id)) return;
      if (error !== undefined || receivers === 0) {
        this.pending.delete(id);
        done(error ?? new Error('no responders'), entry.got);
        return;
      }
      entry.expected = receivers;
      if (entry.got >= receivers) {
        this.pending.delete(id);
        done(undefined, entry.got);
      }
    };
    if (this.batcher !== undefined) this.batcher.enqueue(this.requestChannel, encoded, onPublished);
    else this.pub.publish(this.requestChannel, encoded).then((receivers) => onPublished(undefined, receivers), (error: unknown) => onPublished(error, 0));
  }

  private onReply(reply: WireReply): void {
    const entry = this.pending.get(reply.id);
    if (entry === undefined) return;
    entry.got++;
    if (entry.expected >= 0 && entry.got >= entry.expected) {
      this.pending.delete(reply.id);
      entry.done(undefined, entry.got);
    }
  }

  async close(): Promise<void> {
    this.pub.disconnect();
    this.sub.disconnect();
  }
}

/** One responding instance of the floor; `onRequest` is what answers (the floor's own reply, or a handler). */
export class FloorResponder {
  private readonly pub: Redis;
  private readonly sub: Redis;
  private readonly batcher: TickBatcher | undefined;
  private readonly fromJson: string;

  constructor(
    url: string,
    private readonly namespace: string,
    readonly instanceId: string,
    coalesce: boolean,
    /** Where coalesced replies go instead of the connection (a measurement without Redis). */
    publisher?: FloorPublisher,
  ) {
    this.pub = new Redis(url, { lazyConnect: true });
    this.sub = new Redis(url, { lazyConnect: true });
    this.batcher = coalesce ? new TickBatcher(publisher ?? this.pub) : undefined;
    this.fromJson = JSON.stringify(instanceId);
  }

  async start(): Promise<void> {
    await Promise.all([this.pub.connect(), this.sub.connect()]);
    this.sub.on('message', (_channel: string, message: string) => this.receive(message));
    await this.sub.subscribe(`${this.namespace}:req`);
  }

  /** One message of the request channel: a request, or a batch of them. */
  receive(message: string): void {
    const parsed = JSON.parse(message) as WireRequest | WireRequest[];
    if (Array.isArray(parsed)) for (const request of parsed) this.onRequest(request);
    else this.onRequest(parsed);
  }

  protected onRequest(request: WireRequest): void {
    if (request.p === HOLD_PATTERN) {
      setTimeout(() => this.reply(request, null), Number(request.data));
      return;
    }
    this.reply(request, REPLY_DATA);
  }

  protected reply(request: WireRequest, data: unknown): void {
    const encoded = `{"id":${JSON.stringify(request.id)},"from":${this.fromJson},"data":${JSON.stringify(data)}}`;
    if (this.batcher !== undefined) this.batcher.enqueue(request.replyTo, encoded);
    else void this.pub.publish(request.replyTo, encoded);
  }

  async close(): Promise<void> {
    this.pub.disconnect();
    this.sub.disconnect();
  }
}

export async function startFloorResponders(url: string, namespace: string, ids: readonly string[], coalesce: boolean): Promise<ResponderGroup> {
  const responders = ids.map((id) => new FloorResponder(url, namespace, id, coalesce));
  await Promise.all(responders.map((responder) => responder.start()));
  return { close: async () => void (await Promise.all(responders.map((responder) => responder.close()))) };
}
