import { Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import { BufferChannels } from '../core/channels.js';
import { Coalescer } from '../core/coalescer.js';
import { decodeMessage, type EventEnvelope, type RequestEnvelope } from '../core/envelope.js';
import { BufferErrorCode } from '../core/errors/buffer.error.js';
import { ConcurrencyLimiter } from '../core/concurrency-limiter.js';
import { describeRejection, GuardedBus, type InboundRejection } from '../core/guarded-bus.js';
import { BoundedLog } from '../core/logger.js';
import { resolveBufferOptions, type BufferOptions, type ResolvedBufferOptions } from '../core/options.js';
import { IoredisBus, type BusEvents, type BusStatus, type RedisBus } from '../core/redis-bus.js';
import { ReplyWriter } from '../core/reply-writer.js';
import { BUFFER_TRANSPORT } from './buffer.constants.js';
import { BufferContext } from './buffer.context.js';
import { runWithHooks } from './processing-hooks.js';

/** Counters for monitoring a transport; they only ever grow. */
export interface BufferServerStats {
  requests: number;
  events: number;
  /** Requests that arrived after their deadline and were dropped unanswered. */
  expired: number;
  /** Requests for a pattern this instance has no handler for (only possible with `to`). */
  unhandled: number;
  malformedMessages: number;
  replyPublishFailures: number;
  /** With `signingKey`: messages dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
  /** Requests answered with `BUFFER_OVERLOADED`: `maxConcurrentHandlers` busy and the queue full. */
  overloaded: number;
  /** Times the connection to Redis came back (subscriptions confirmed) after being lost. */
  reconnects: number;
}

type BufferServerEvents = { [K in keyof BusEvents]: (...args: BusEvents[K]) => void };

/**
 * The server side: plug it into Nest with
 * `app.connectMicroservice({ strategy: new RedisBufferTransport(options) })`.
 *
 * Every instance subscribes one channel per `@BufferedPattern` / `@BufferedEvent`, plus its own
 * direct channel, and answers each request on the request's `replyTo`.
 */
export class RedisBufferTransport extends Server<BufferServerEvents, BusStatus> implements CustomTransportStrategy {
  override readonly transportId = BUFFER_TRANSPORT;
  protected override readonly logger = new Logger(RedisBufferTransport.name);
  readonly options: ResolvedBufferOptions;
  readonly stats: BufferServerStats = { requests: 0, events: 0, expired: 0, unhandled: 0, malformedMessages: 0, replyPublishFailures: 0, forgedMessages: 0, overloaded: 0, reconnects: 0 };
  private readonly channels: BufferChannels;
  private readonly fromJson: string;
  private bus: RedisBus | undefined;
  private coalescer: Coalescer | undefined;
  private subscribedChannels: string[] = [];
  private readonly active = new Set<ReplyWriter>();
  private readonly pendingListeners: Array<[keyof BusEvents, (...args: never[]) => void]> = [];
  private readonly badInput: BoundedLog;
  private closing = false;
  private readonly limiter: ConcurrencyLimiter;
  private everConnected = false;
  // Shared by every request's ReplyWriter: no closure per request.
  private readonly onReplyPublishError = (error: Error, replyTo: string): void => {
    this.stats.replyPublishFailures++;
    this.badInput.warn(`Could not publish a reply to "${replyTo}": ${error.message}`);
  };

  constructor(options: BufferOptions = {}) {
    super();
    this.options = resolveBufferOptions(options);
    this.channels = new BufferChannels(this.options.namespace);
    this.fromJson = JSON.stringify(this.options.instanceId);
    this.badInput = new BoundedLog(this.logger as Logger);
    this.limiter = new ConcurrencyLimiter(this.options.maxConcurrentHandlers, this.options.maxQueuedHandlers, () => this.active.size);
  }

  /** This instance's id, as callers see it in replies and pass it in `to`. */
  get instanceId(): string {
    return this.options.instanceId;
  }

  /** How many requests this instance is handling right now. */
  get activeRequests(): number {
    return this.active.size;
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      const redisBus = new IoredisBus({ redis: this.options.redis, connectTimeout: this.options.connectTimeout, connectionName: `rb:${this.options.instanceId}` });
      const bus = new GuardedBus(redisBus, this.options, (reason, channel, length) => this.onInboundRejected(reason, channel, length));
      this.bus = bus;
      this.coalescer = new Coalescer((channel, message) => bus.publish(channel, message), this.options);
      for (const [event, listener] of this.pendingListeners.splice(0)) bus.on(event, listener as never);
      bus.on('status', (status) => this.onStatus(status));
      bus.on('message', (channel, message) => this.onMessage(channel, message));
      if (bus.listenerCount('error') === 0) bus.on('error', (error) => this.badInput.warn(`Redis: ${error.message}`));
      await bus.connect();
      this.subscribedChannels = this.channelsToSubscribe();
      await bus.subscribe(this.subscribedChannels);
      this.logger.log(`Instance "${this.instanceId}" listening on ${this.subscribedChannels.length} channels in namespace "${this.options.namespace}".`);
      callback();
    } catch (error) {
      callback(error);
    }
  }

  /**
   * Stops taking requests at once (unsubscribes), lets handlers in flight finish for at most
   * `shutdownTimeout` ms, publishes their replies, then disconnects.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const bus = this.bus;
    if (bus === undefined) return;
    try {
      await bus.unsubscribe(this.subscribedChannels);
    } catch {
      // Not connected: nothing is subscribed any more anyway.
    }
    const deadline = Date.now() + this.options.shutdownTimeout;
    while (this.active.size + this.limiter.queued > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    if (this.active.size > 0) this.logger.warn(`Closed with ${this.active.size} handlers still running after shutdownTimeout (${this.options.shutdownTimeout} ms).`);
    this.coalescer?.flush();
    // Let the last PUBLISH commands reach the socket before QUIT.
    await new Promise((resolve) => setImmediate(resolve));
    await bus.close();
  }

  on<K extends keyof BufferServerEvents>(event: K, callback: BufferServerEvents[K]): void {
    if (this.bus !== undefined) this.bus.on(event, callback as never);
    else this.pendingListeners.push([event, callback as never]);
  }

  /** The underlying ioredis clients `{ publisher, subscriber }`; throws before `listen`. */
  unwrap<T>(): T {
    if (this.bus === undefined) {
      throw new Error('Not initialized: call app.startAllMicroservices() (or listen()) before unwrap().');
    }
    return this.bus.unwrap() as T;
  }

  private channelsToSubscribe(): string[] {
    const channels = [this.channels.direct(this.instanceId)];
    for (const [pattern, handler] of this.messageHandlers) {
      channels.push(handler.isEventHandler ? this.channels.event(pattern) : this.channels.request(pattern));
    }
    return channels;
  }

  private onStatus(status: BusStatus): void {
    this._status$.next(status);
    if (status === 'connected') {
      if (this.everConnected) this.stats.reconnects++;
      this.everConnected = true;
    }
    if (status === 'reconnecting') this.logger.warn('Redis connection lost; reconnecting (subscriptions are restored automatically).');
    else if (status === 'connected' && this.subscribedChannels.length > 0) this.logger.log('Connected to Redis; subscriptions confirmed.');
  }

  private onMessage(channel: string, message: string): void {
    if (this.closing) return;
    const { envelopes, rejected } = decodeMessage(message, channel);
    for (const error of rejected) this.rejectInput(error.message);
    for (const envelope of envelopes) {
      if (envelope.kind === 'request') {
        if (channel !== this.channels.direct(this.instanceId) && channel !== this.channels.request(envelope.pattern)) {
          this.rejectInput(`Dropped a request for "${envelope.pattern}" that arrived on "${channel}".`);
          continue;
        }
        if (!this.limiter.submit(() => this.onRequest(envelope, channel))) this.refuseOverloaded(envelope);
      } else if (envelope.kind === 'event') {
        if (channel !== this.channels.event(envelope.pattern)) {
          this.rejectInput(`Dropped an event for "${envelope.pattern}" that arrived on "${channel}".`);
          continue;
        }
        this.onEvent(envelope, channel);
      } else {
        this.rejectInput(`Dropped a reply on request channel "${channel}".`);
      }
    }
  }

  private onInboundRejected(reason: InboundRejection, channel: string, length: number): void {
    const message = describeRejection(reason, channel, length, this.options.maxPayloadBytes);
    if (reason === 'oversized') return this.rejectInput(message);
    this.stats.forgedMessages++;
    this.badInput.warn(message);
  }

  private refuseOverloaded(envelope: RequestEnvelope): void {
    this.stats.requests++;
    this.stats.overloaded++;
    this.writerFor(envelope).error({
      code: BufferErrorCode.Overloaded,
      message: `Instance "${this.instanceId}" is overloaded: ${this.options.maxConcurrentHandlers} handlers running and ${this.options.maxQueuedHandlers} requests queued; retry later, add instances, or raise "maxConcurrentHandlers" / "maxQueuedHandlers".`,
    });
  }

  private rejectInput(message: string): void {
    this.stats.malformedMessages++;
    this.badInput.warn(message);
  }

  private onRequest(envelope: RequestEnvelope, channel: string): void {
    this.stats.requests++;
    if (Date.now() > envelope.deadline) {
      // The caller has stopped listening: the work would be wasted.
      this.stats.expired++;
      return;
    }
    const writer = this.writerFor(envelope);
    // Patterns arrive normalized (client and addHandler both use Nest's transformPatternToRoute), so
    // the Map finds them. Nest's getHandlerByPattern JSON.parses the pattern and throws on a plain
    // string, once per call: it runs only on a miss (a hand-written object pattern on the direct channel).
    const handler = this.messageHandlers.get(envelope.pattern) ?? this.getHandlerByPattern(envelope.pattern);
    if (handler === null || handler.isEventHandler) {
      this.stats.unhandled++;
      writer.error({ code: BufferErrorCode.NoHandler, message: `Instance "${this.instanceId}" has no handler for "${envelope.pattern}".` });
      return;
    }
    const context = this.contextFor(envelope, channel);
    this.active.add(writer);
    // Past the deadline nobody listens: stop the handler's stream instead of doing dead work. The
    // timer is armed only for a stream still open once subscribed (most handlers have answered by
    // then), which saves a setTimeout/clearTimeout pair per request.
    let expiry: ReturnType<typeof setTimeout> | undefined;
    const settle = (): void => {
      if (expiry !== undefined) clearTimeout(expiry);
      this.active.delete(writer);
      this.limiter.pump();
    };
    const run = runWithHooks(this, context, async (runEndHook) => {
      const stream$ = this.transformToObservable(await (handler as MessageHandler)(envelope.data, context)) as Observable<unknown>;
      const subscription = stream$.subscribe(writer);
      // Runs on completion, error or unsubscribe; at once if the stream has already ended.
      subscription.add(() => {
        runEndHook();
        settle();
      });
      if (writer.isEnded) {
        subscription.unsubscribe();
      } else {
        // A deadline that passed while the handler was awaited leaves the stream running, as before.
        const remaining = envelope.deadline - Date.now();
        if (remaining > 0) expiry = setTimeout(() => subscription.unsubscribe(), remaining);
      }
    }) as unknown;
    Promise.resolve(run).catch((error: unknown) => {
      settle();
      writer.error(error);
    });
  }

  private writerFor(envelope: RequestEnvelope): ReplyWriter {
    return new ReplyWriter(this.coalescer!, envelope.replyTo, envelope.id, this.fromJson, this.options.maxPayloadBytes, this.onReplyPublishError);
  }

  private contextFor(envelope: RequestEnvelope | EventEnvelope, channel: string): BufferContext {
    return new BufferContext({
      kind: envelope.kind,
      requestId: envelope.id,
      pattern: envelope.pattern,
      senderId: envelope.from,
      instanceId: this.instanceId,
      channel,
      headers: envelope.headers,
      deadline: envelope.kind === 'request' ? envelope.deadline : undefined,
    });
  }

  private onEvent(envelope: EventEnvelope, channel: string): void {
    this.stats.events++;
    const context = this.contextFor(envelope, channel);
    this.handleEvent(envelope.pattern, { pattern: envelope.pattern, data: envelope.data }, context).catch((error: unknown) =>
      this.logger.error(`Event handler for "${envelope.pattern}" failed: ${(error as Error)?.message ?? String(error)}`),
    );
  }
}
