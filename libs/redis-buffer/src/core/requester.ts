import { randomBytes } from 'node:crypto';
import { BufferChannels } from './channels.js';
import { systemClock, type Clock } from './clock.js';
import { Coalescer, type OutgoingEnvelope } from './coalescer.js';
import { decodeMessage, encodeEnvelope, type BufferHeaders, type EventEnvelope, type RequestEnvelope } from './envelope.js';
import { ConnectionLostError } from './errors/connection-lost.error.js';
import { PayloadTooLargeError } from './errors/payload-too-large.error.js';
import { TooManyRequestsError } from './errors/too-many-requests.error.js';
import { Gatherer, type GatherSink } from './gatherer.js';
import { BoundedLog, type BufferLogger } from './logger.js';
import type { ResolvedBufferOptions, ResolvedCallOptions } from './options.js';
import type { BusStatus, RedisBus } from './redis-bus.js';
import type { BufferReply, GatherResult } from './reply.js';
import type { BufferTimeoutError } from './errors/buffer-timeout.error.js';

/** Counters a caller can read for monitoring; they only ever grow. */
export interface RequesterStats {
  requests: number;
  /** Replies for a request that had already completed, been cancelled, or was never ours. */
  lateReplies: number;
  duplicateReplies: number;
  malformedMessages: number;
  /** With `signingKey`: replies dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
}

/**
 * The caller's side of the protocol, without Nest: one inbox subscription for all replies (routed
 * by request id through `pending`), per-tick coalescing of requests per channel, and one
 * `Gatherer` per request.
 */
export class Requester {
  readonly channels: BufferChannels;
  readonly inbox: string;
  readonly stats: RequesterStats = { requests: 0, lateReplies: 0, duplicateReplies: 0, malformedMessages: 0, forgedMessages: 0 };
  private readonly pending = new Map<string, Gatherer<unknown>>();
  private readonly coalescer: Coalescer;
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private nextId = 0;
  private started: Promise<void> | undefined;
  private closed = false;
  private readonly badInput: BoundedLog;

  constructor(
    private readonly bus: RedisBus,
    private readonly options: ResolvedBufferOptions,
    logger: BufferLogger,
    private readonly clock: Clock = systemClock,
  ) {
    this.channels = new BufferChannels(options.namespace);
    this.inbox = this.channels.inbox(`${options.instanceId}.${this.idPrefix}`);
    this.coalescer = new Coalescer((channel, message) => bus.publish(channel, message), options);
    this.badInput = new BoundedLog(logger);
    bus.on('message', (channel, message) => {
      if (channel === this.inbox) this.onInboxMessage(message);
    });
    bus.on('status', (status) => this.onStatus(status));
  }

  /** Connects and subscribes the inbox; concurrent calls share one attempt. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.started ??= this.bus
      .connect()
      .then(() => this.bus.subscribe([this.inbox]))
      .catch((error: unknown) => {
        this.started = undefined;
        throw error;
      });
    return this.started;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends one request. Errors found before publishing (too large, too many in flight) are thrown;
   * everything after reaches `sink`. Returns a function that cancels the request at once.
   */
  request<T>(pattern: string, data: unknown, call: ResolvedCallOptions<T>, sink: GatherSink<T>): () => void {
    if (this.closed) throw new ConnectionLostError('the client was closed');
    if (this.pending.size >= this.options.maxInFlight) throw new TooManyRequestsError(this.options.maxInFlight);
    const id = `${this.idPrefix}${(this.nextId++).toString(36)}`;
    // One object with prototype methods rather than three closures: it lives as long as the request.
    const route = new RequestRoute<T>(this.pending, id, call.timeout, sink);
    const gatherer: Gatherer<T> = new Gatherer<T>(id, pattern, call, route, this.clock);
    const envelope: RequestEnvelope = {
      v: 1,
      kind: 'request',
      id,
      pattern,
      from: this.options.instanceId,
      replyTo: this.inbox,
      deadline: gatherer.deadline,
      headers: call.headers,
      data: data === undefined ? null : data,
    };
    let item: OutgoingEnvelope | undefined;
    try {
      item = this.prepare(envelope, 'request');
    } catch (error) {
      gatherer.cancel();
      throw error;
    }
    this.pending.set(id, gatherer as Gatherer<unknown>);
    this.stats.requests++;
    const publish = (): void => {
      if (gatherer.isEnded || item === undefined) return;
      route.published = true;
      const channel = call.to === undefined ? this.channels.request(pattern) : this.channels.direct(call.to);
      this.coalescer.enqueue(channel, item, (error, receivers) => {
        if (error !== undefined) gatherer.fail(error);
        else gatherer.expect(receivers);
      });
      // The coalescer holds the encoded request until it is flushed; the closures that live as long
      // as the request (cancel, sink) share this scope and must not keep it (memory per request in flight).
      item = undefined;
    };
    if (this.bus.status === 'connected' && this.started !== undefined) {
      publish();
    } else if (this.bus.status === 'reconnecting' || this.bus.status === 'closed') {
      // Waiting for a reconnect would make the request hang on ioredis's retry timers.
      gatherer.fail(new ConnectionLostError(`Redis connection is ${this.bus.status}`));
    } else {
      // First connection: wait for it, bounded by the request's own timeout.
      this.start().then(publish, (error: Error) => gatherer.fail(error));
    }
    return () => {
      gatherer.cancel();
      this.pending.delete(id);
    };
  }

  /** Broadcasts an event to every instance handling `pattern`; resolves with Redis's receiver count. */
  async emit(pattern: string, data: unknown, headers: BufferHeaders = {}): Promise<number> {
    await this.start();
    const envelope: EventEnvelope = {
      v: 1,
      kind: 'event',
      id: `${this.idPrefix}${(this.nextId++).toString(36)}`,
      pattern,
      from: this.options.instanceId,
      headers,
      data: data === undefined ? null : data,
    };
    const item = this.prepare(envelope, 'event');
    return new Promise<number>((resolve, reject) => {
      this.coalescer.enqueue(this.channels.event(pattern), item, (error, receivers) => (error === undefined ? resolve(receivers) : reject(error)));
    });
  }

  /** Fails every pending request with `ConnectionLostError` and closes nothing else. */
  failAll(reason: string): void {
    for (const gatherer of [...this.pending.values()]) {
      gatherer.fail(new ConnectionLostError(reason, { replies: gatherer.allReplies() }));
    }
    this.pending.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.coalescer.flush();
    this.failAll('the client was closed');
  }

  private prepare(envelope: RequestEnvelope | EventEnvelope, what: string): OutgoingEnvelope {
    const encoded = encodeEnvelope(envelope);
    // A UTF-16 length times 3 bounds the UTF-8 size; count bytes exactly only when it matters.
    const bytes = encoded.length * 3 <= this.options.maxPayloadBytes ? encoded.length : Buffer.byteLength(encoded);
    if (bytes > this.options.maxPayloadBytes) throw new PayloadTooLargeError(bytes, this.options.maxPayloadBytes, what);
    return { bytes, encode: () => encoded };
  }

  private onInboxMessage(message: string): void {
    const { envelopes, rejected } = decodeMessage(message, this.inbox);
    for (const error of rejected) {
      this.stats.malformedMessages++;
      this.badInput.warn(error.message);
    }
    for (const envelope of envelopes) {
      if (envelope.kind !== 'reply') {
        this.stats.malformedMessages++;
        this.badInput.warn(`Dropped a "${envelope.kind}" envelope on inbox "${this.inbox}": only replies belong there.`);
        continue;
      }
      const gatherer = this.pending.get(envelope.id);
      if (gatherer === undefined) {
        this.stats.lateReplies++;
        continue;
      }
      const outcome = gatherer.accept(envelope);
      if (outcome === 'duplicate') this.stats.duplicateReplies++;
      else if (outcome === 'late') this.stats.lateReplies++;
    }
  }

  private onStatus(status: BusStatus): void {
    // Replies published while the inbox is disconnected are lost for good (pub/sub is at-most-once),
    // so waiting would only turn a known failure into a timeout.
    if (status === 'reconnecting' || status === 'disconnected') this.failAll(`Redis connection ${status}`);
  }
}

/** Between a request's `Gatherer` and its caller: drops the routing entry when the request ends. */
class RequestRoute<T> implements GatherSink<T> {
  published = false;

  constructor(
    private readonly pending: Map<string, Gatherer<unknown>>,
    private readonly id: string,
    private readonly timeout: number,
    private readonly sink: GatherSink<T>,
  ) {}

  next(reply: BufferReply<T>): void {
    this.sink.next(reply);
  }

  complete(result: GatherResult<T>, timedOut?: BufferTimeoutError<T>): void {
    this.pending.delete(this.id);
    if (!this.published && result.completedBy === 'timeout') {
      this.sink.fail(new ConnectionLostError(`not connected to Redis within the request's timeout (${this.timeout} ms)`), result);
    } else {
      this.sink.complete(result, timedOut);
    }
  }

  fail(error: Error, result: GatherResult<T>): void {
    this.pending.delete(this.id);
    this.sink.fail(error, result);
  }
}

export type { GatherResult };
