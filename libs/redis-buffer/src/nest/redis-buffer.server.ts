import { randomBytes } from 'node:crypto';
import { Logger } from '@nestjs/common';
import { Server, type BaseRpcContext, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { isObservable, type Observable, type Subscription } from 'rxjs';
import { BufferChannels, channelPatternOfRoute } from '../core/wire/channels.js';
import { Coalescer } from '../core/bus/coalescer.js';
import { ConcurrencyLimiter } from '../core/respond/concurrency-limiter.js';
import { decodeMessage, encodeEnvelope, type ByeEnvelope, type Envelope, type EventEnvelope, type HelloEnvelope, type PongEnvelope, type RefusableRequest, type RequestEnvelope } from '../core/wire/envelope.js';
import { BufferErrorCode } from '../core/errors/buffer.error.js';
import { DuplicateInstanceError } from '../core/errors/duplicate-instance.error.js';
import { RedisPermissionError } from '../core/errors/redis-permission.error.js';
import { describeRejection, GuardedBus, type InboundRejection } from '../core/bus/guarded-bus.js';
import { BoundedLog } from '../core/logger.js';
import { resolveBufferOptions, type BufferOptions, type ResolvedBufferOptions } from '../core/options.js';
import { createBus } from '../core/bus/create-bus.js';
import type { BusEvents, BusStatus, RedisBus } from '../core/bus/redis-bus.js';
import { ReplyWriter } from '../core/respond/reply-writer.js';
import { BufferTelemetry, loadOpenTelemetry, type ObservedCounters, type ProcessTrace } from '../core/telemetry/telemetry.js';
import { redisServerAddress } from '../core/telemetry/server-address.js';
import { BUFFER_TRANSPORT } from './buffer.constants.js';
import { BufferContext } from './buffer.context.js';
import type { DurableConsumer } from '../core/durable/durable-consumer.js';
import { isDurableHandler, startDurableHandlers } from './durable-handlers.js';
import { runWithHooks } from './processing-hooks.js';

/** Counters for monitoring a transport; they only ever grow. */
export interface BufferServerStats {
  requests: number;
  events: number;
  /** Requests refused with `BUFFER_EXPIRED` (they arrived, or waited, past their deadline), and events dropped past theirs. */
  expired: number;
  /** Requests for a pattern this instance has no handler for (only possible with `to`). */
  unhandled: number;
  /** Every refusal sent (expired, unsupported version, bad request, no handler, overloaded, shutting down). */
  refused: number;
  malformedMessages: number;
  replyPublishFailures: number;
  /** With `signingKey`: messages dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
  /** Requests answered with `BUFFER_OVERLOADED`, and events dropped, because `maxConcurrentHandlers` were busy and the queue full. */
  overloaded: number;
  /** Times the connection to Redis came back (subscriptions confirmed) after being lost. */
  reconnects: number;
  /** Pings from callers checking that this instance is alive. */
  pings: number;
}

type BufferServerEvents = { [K in keyof BusEvents]: (...args: BusEvents[K]) => void };

type HandlerWithChain = MessageHandler & { next?: MessageHandler };

type LifeCycle = 'idle' | 'listening' | 'draining' | 'closed';

/**
 * The server side: plug it into Nest with
 * `app.connectMicroservice({ strategy: new RedisBufferTransport(options) })`.
 *
 * Every instance subscribes one channel per `@BufferedPattern` / `@BufferedEvent`, its own direct
 * channel and the `who` channel, announces itself, and answers each request on the request's
 * `replyTo`: with the handler's values, its error, or a refusal. It never stays silent to a request
 * it can address.
 */
export class RedisBufferTransport extends Server<BufferServerEvents, BusStatus> implements CustomTransportStrategy {
  override readonly transportId = BUFFER_TRANSPORT;
  protected override readonly logger = new Logger(RedisBufferTransport.name);
  readonly options: ResolvedBufferOptions;
  /** Random per transport object: tells this process from an earlier one with the same `instanceId`. */
  readonly incarnation = randomBytes(8).toString('base64url');
  readonly stats: BufferServerStats = {
    requests: 0,
    events: 0,
    expired: 0,
    unhandled: 0,
    refused: 0,
    malformedMessages: 0,
    replyPublishFailures: 0,
    forgedMessages: 0,
    overloaded: 0,
    reconnects: 0,
    pings: 0,
  };
  private readonly channels: BufferChannels;
  private readonly directChannel: string;
  private readonly fromJson: string;
  private bus: RedisBus | undefined;
  private coalescer: Coalescer | undefined;
  private runHost: HandlerRunHost | undefined;
  // Event handlers live apart from request handlers, so one pattern can have both.
  private readonly eventHandlers = new Map<string, HandlerWithChain>();
  // Channel form of a pattern (what travels) → its handler (Nest keys its maps by its own route)
  // and the channel its requests arrive on.
  private requestRoutes = new Map<string, RequestRoute>();
  private eventRoutes = new Map<string, HandlerWithChain>();
  private workChannels: string[] = [];
  // Requests (their ReplyWriter) and events (a token) being handled, with the handler's stream
  // subscription once there is one: what a shutdown that runs out of time stops.
  private readonly active = new Map<object, Subscription | undefined>();
  private readonly pendingListeners: Array<[keyof BusEvents, (...args: never[]) => void]> = [];
  private readonly badInput: BoundedLog;
  private lifeCycle: LifeCycle = 'idle';
  // Set once the shutdown drain has run out: what is still queued or running is refused or stopped.
  private stopping = false;
  private readonly limiter: ConcurrencyLimiter;
  private everConnected = false;
  private thawTimer: ReturnType<typeof setInterval> | undefined;
  private readonly telemetry: BufferTelemetry;
  // Durable half (@DurablePattern handlers on Redis Streams): see durable-handlers.ts.
  private durable: DurableConsumer | undefined;
  // Nest's own do-nothing start hook, as this server was built with it: while it is still the one
  // set (and no end hook is), handlers run without the processing-hook wrapper.
  private readonly defaultStartHook: unknown = (this as unknown as ProcessingHookFields).onProcessingStartHook;
  // Shared by every request's HandlerRun: no closure per request.
  private readonly handlerDone = (run: ReplyWriter): void => {
    if (this.active.delete(run)) this.limiter.pump();
  };
  // A handler's stream still open once subscribed: what a shutdown that runs out of time stops.
  private readonly handlerStream = (writer: ReplyWriter, subscription: Subscription): void => {
    if (this.active.has(writer)) this.active.set(writer, subscription);
  };
  // Shared by every request's ReplyWriter: no closure per request.
  private readonly onReplyPublishError = (error: Error, replyTo: string): void => {
    this.stats.replyPublishFailures++;
    this.badInput.warn(`Could not publish a reply to "${replyTo}": ${error.message}`);
  };

  constructor(options: BufferOptions = {}) {
    super();
    this.options = resolveBufferOptions(options);
    this.channels = new BufferChannels(this.options.namespace);
    this.directChannel = this.channels.direct(this.options.instanceId);
    this.fromJson = JSON.stringify(this.options.instanceId);
    this.badInput = new BoundedLog(this.logger as Logger);
    this.limiter = new ConcurrencyLimiter(this.options.maxConcurrentHandlers, this.options.maxQueuedHandlers, () => this.active.size);
    const telemetry = (this.telemetry = new BufferTelemetry('server', this.options.namespace, this.options.instanceId, redisServerAddress(this.options)));
    // Traces and metrics when the app has @opentelemetry/api (a no-op without an SDK registered).
    void loadOpenTelemetry().then((api) => {
      if (api !== undefined) telemetry.attach(api, this.observedCounters(), this.observedGauges());
    });
  }

  /** The connection's state now: `connected` means both connections are up and every subscription is confirmed. */
  get connectionStatus(): BusStatus {
    return this.bus?.status ?? 'disconnected';
  }

  private observedCounters(): ObservedCounters {
    const stats = this.stats;
    return {
      consumed: { name: 'messaging.client.consumed.messages', description: 'Requests and events received.', read: () => stats.requests + stats.events },
      refused: { name: 'nestjs_redis_buffer.refusals', description: 'Requests refused (expired, unsupported, bad, no handler, overloaded, shutting down).', read: () => stats.refused },
      expired: { name: 'nestjs_redis_buffer.requests.expired', description: 'Requests and events that arrived, or waited, past their deadline.', read: () => stats.expired },
      overloaded: { name: 'nestjs_redis_buffer.requests.overloaded', description: 'Requests refused and events dropped because every handler slot and the queue were full.', read: () => stats.overloaded },
      malformed: { name: 'nestjs_redis_buffer.messages.malformed', description: 'Malformed messages dropped.', read: () => stats.malformedMessages },
      forged: { name: 'nestjs_redis_buffer.messages.forged', description: 'Unsigned or forged messages dropped (with signingKey).', read: () => stats.forgedMessages },
      publishFailures: { name: 'nestjs_redis_buffer.replies.publish_failures', description: 'Replies that could not be published.', read: () => stats.replyPublishFailures },
      reconnects: { name: 'nestjs_redis_buffer.reconnects', description: 'Times the connection to Redis came back after a loss.', read: () => stats.reconnects },
      pings: { name: 'nestjs_redis_buffer.pings', description: 'Liveness pings answered.', read: () => stats.pings },
    };
  }

  private observedGauges(): ObservedCounters {
    return {
      inFlight: { name: 'nestjs_redis_buffer.handlers.in_flight', description: 'Handlers running, and events being handled, on this instance now.', read: () => this.active.size },
      queued: { name: 'nestjs_redis_buffer.handlers.queued', description: 'Requests waiting for a handler slot.', read: () => this.limiter.queued },
      connected: { name: 'nestjs_redis_buffer.connection.up', description: 'Whether the connection to Redis is up with every subscription confirmed (1) or not (0).', read: () => (this.connectionStatus === 'connected' ? 1 : 0) },
    };
  }

  /** This instance's id, as callers see it in replies and pass it in `to`. */
  get instanceId(): string {
    return this.options.instanceId;
  }

  /** The consumer of this instance's `@DurablePattern` handlers (stats, trimming); `undefined` before `listen` or without any. */
  get durableConsumer(): DurableConsumer | undefined {
    return this.durable;
  }

  /** How many requests and events this instance is handling right now. */
  get activeRequests(): number {
    return this.active.size;
  }

  /** Nest registers every handler here; event handlers are kept apart so a pattern can have both kinds. */
  override addHandler(pattern: unknown, callback: MessageHandler, isEventHandler = false, extras: Record<string, unknown> = {}): void {
    if (!isEventHandler) return super.addHandler(pattern, callback, false, extras);
    const route = this.normalizePattern(pattern as string);
    callback.isEventHandler = true;
    callback.extras = extras;
    let tail = this.eventHandlers.get(route);
    if (tail === undefined) {
      this.eventHandlers.set(route, callback);
      return;
    }
    while (tail.next !== undefined) tail = tail.next as HandlerWithChain;
    tail.next = callback;
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    let bus: GuardedBus | undefined;
    try {
      const redisBus = createBus(this.options, `rb:${this.options.instanceId}`);
      bus = new GuardedBus(redisBus, this.options, (reason, channel, length) => this.onInboundRejected(reason, channel, length));
      this.bus = bus;
      const guarded = bus;
      this.coalescer = new Coalescer((channel, message) => guarded.publish(channel, message), this.options);
      this.runHost = {
        coalescer: this.coalescer,
        fromJson: this.fromJson,
        maxPayloadBytes: this.options.maxPayloadBytes,
        onPublishError: this.onReplyPublishError,
        telemetry: this.telemetry,
        done: this.handlerDone,
        track: this.handlerStream,
      };
      for (const [event, listener] of this.pendingListeners.splice(0)) bus.on(event, listener as never);
      bus.on('status', (status) => this.onStatus(status));
      bus.on('message', (channel, message) => this.onMessage(channel, message));
      if (bus.listenerCount('error') === 0) bus.on('error', (error) => this.badInput.warn(`Redis: ${error.message}`));
      await bus.connect();
      this.mapRoutes();
      await this.ensureUniqueId(bus, 0);
      this.workChannels = [
        this.channels.who(),
        ...[...this.requestRoutes.values()].map((route) => route.channel),
        ...[...this.eventRoutes.keys()].map((pattern) => this.channels.event(pattern)),
      ];
      // Subscribed before announcing: an instance callers know of can always be reached.
      await bus.subscribe([this.directChannel, ...this.workChannels]);
      // Two processes that passed the first check at the same moment both see 2 here, and both stop.
      await this.ensureUniqueId(bus, 1);
      this.lifeCycle = 'listening';
      await this.announce();
      this.watchForThaw();
      // @DurablePattern handlers are event handlers on routes of their own, consumed from streams.
      this.durable = await startDurableHandlers({
        options: this.options,
        handlers: this.eventHandlers,
        logger: this.logger,
        runWithProcessingHooks: (context, fn) => this.runHooked(context, fn),
        transformToObservable: (result) => this.transformToObservable(result) as Observable<unknown>,
        telemetry: this.telemetry,
      });
      this.logger.log(`Instance "${this.instanceId}" listening on ${this.workChannels.length + 1} channels in namespace "${this.options.namespace}".`);
      callback();
    } catch (error) {
      if (error instanceof DuplicateInstanceError && bus !== undefined) {
        this.lifeCycle = 'closed';
        await bus.close().catch(() => undefined);
      }
      callback(error);
    }
  }

  /**
   * Drains, then disconnects:
   * 1. unsubscribes every pattern channel (confirmed by Redis): from then on, no caller counts this
   *    instance as a receiver;
   * 2. answers every request Redis delivered before that, and lets handlers finish, for at most
   *    `shutdownTimeout` ms; direct requests arriving meanwhile are refused (`BUFFER_SHUTTING_DOWN`);
   * 3. refuses what is still queued and ends what still runs with a `BUFFER_SHUTTING_DOWN` error;
   * 4. announces that it left (`bye`, after its last reply), unsubscribes its direct channel, disconnects.
   */
  async close(): Promise<void> {
    if (this.lifeCycle === 'draining' || this.lifeCycle === 'closed') return;
    const bus = this.bus;
    this.lifeCycle = bus === undefined ? 'closed' : 'draining';
    if (this.thawTimer !== undefined) clearInterval(this.thawTimer);
    this.thawTimer = undefined;
    if (bus === undefined) return;
    // Finishes or releases the durable entries this instance holds, beside the pub/sub drain.
    const durableClosed = this.durable?.close();
    // With Redis away there is nothing to unsubscribe from (the server dropped the connection), and
    // ioredis would queue the command until it is back: never wait for it.
    if (bus.status === 'connected') await withinMs(bus.unsubscribe(this.workChannels), this.options.shutdownTimeout);
    const deadline = Date.now() + this.options.shutdownTimeout;
    while (this.active.size + this.limiter.queued > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    this.stopping = true;
    for (const task of this.limiter.takeAll()) task();
    if (this.active.size > 0) {
      this.logger.warn(`Stopping ${this.active.size} handlers still running after shutdownTimeout (${this.options.shutdownTimeout} ms); their callers get BUFFER_SHUTTING_DOWN.`);
      for (const [work, subscription] of [...this.active]) {
        if (work instanceof ReplyWriter) {
          work.error({ code: BufferErrorCode.ShuttingDown, message: `Instance "${this.instanceId}" shut down before its handler finished (shutdownTimeout ${this.options.shutdownTimeout} ms).` });
        }
        subscription?.unsubscribe();
        this.active.delete(work);
      }
    }
    if (bus.status === 'connected') {
      const bye: ByeEnvelope = { v: 1, kind: 'bye', id: this.incarnation, from: this.instanceId, inc: this.incarnation };
      await withinMs(this.publishNow(this.channels.members(), encodeEnvelope(bye)), 1000);
      await withinMs(bus.unsubscribe([this.directChannel]), 1000);
    }
    this.coalescer?.flush();
    // Let the last PUBLISH commands reach the socket before QUIT.
    await new Promise((resolve) => setImmediate(resolve));
    this.lifeCycle = 'closed';
    await durableClosed;
    await bus.close();
  }

  on<K extends keyof BufferServerEvents>(event: K, callback: BufferServerEvents[K]): void {
    if (this.bus !== undefined) this.bus.on(event, callback as never);
    else this.pendingListeners.push([event, callback as never]);
  }

  /** The underlying ioredis clients: `{ publisher, subscriber }`, or on a cluster `{ publisher: Cluster, subscribers }` (one per master, by `host:port`); throws before `listen`. */
  unwrap<T>(): T {
    if (this.bus === undefined) {
      throw new Error('Not initialized: call app.startAllMicroservices() (or listen()) before unwrap().');
    }
    return this.bus.unwrap() as T;
  }

  private mapRoutes(): void {
    this.requestRoutes = new Map();
    for (const [route, handler] of this.messageHandlers) {
      if (handler.isEventHandler) continue;
      const pattern = channelPatternOfRoute(route);
      this.requestRoutes.set(pattern, { handler, channel: this.channels.request(pattern) });
    }
    this.eventRoutes = new Map();
    for (const [route, handler] of this.eventHandlers) if (!isDurableHandler(handler)) this.eventRoutes.set(channelPatternOfRoute(route), handler);
  }

  /** Refuses to run beside another live process with the same id (more than `allowed` subscribers on its direct channel). */
  private async ensureUniqueId(bus: RedisBus, allowed: number): Promise<void> {
    let subscribers: number;
    try {
      subscribers = await bus.numsub(this.directChannel);
    } catch (error) {
      if (!(error instanceof RedisPermissionError)) throw error;
      this.logger.warn(`Cannot check that instance id "${this.instanceId}" is unique: Redis refused PUBSUB NUMSUB (${error.message}).`);
      return;
    }
    if (subscribers > allowed) {
      if (allowed > 0) await bus.unsubscribe([this.directChannel, ...this.workChannels]).catch(() => undefined);
      throw new DuplicateInstanceError(this.instanceId, this.options.namespace);
    }
  }

  private helloEnvelope(id: string): HelloEnvelope {
    return { v: 1, kind: 'hello', id, from: this.instanceId, inc: this.incarnation, patterns: [...this.requestRoutes.keys()], events: [...this.eventRoutes.keys()] };
  }

  /** Tells every caller this instance is here (after joining, a reconnect, or a freeze). */
  private announce(): Promise<void> {
    return this.publishNow(this.channels.members(), encodeEnvelope(this.helloEnvelope(this.incarnation))).then(
      () => undefined,
      (error: Error) => this.badInput.warn(`Could not announce instance "${this.instanceId}": ${error.message}`),
    );
  }

  private publishNow(channel: string, encoded: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.coalescer!.enqueue(channel, { bytes: encoded.length, encode: () => encoded }, (error, receivers) => (error === undefined ? resolve(receivers) : reject(error)));
    });
  }

  /**
   * A process that was frozen (SIGSTOP, a debugger, a very long pause) may have been taken for
   * silent by callers meanwhile: when a tick comes much later than scheduled, it says hello again.
   */
  private watchForThaw(): void {
    const every = this.options.livenessTimeout / 4;
    let last = Date.now();
    this.thawTimer = setInterval(() => {
      const now = Date.now();
      if (now - last > this.options.livenessTimeout && this.bus?.status === 'connected') void this.announce();
      last = now;
    }, every);
    this.thawTimer.unref();
  }

  private onStatus(status: BusStatus): void {
    this._status$.next(status);
    if (status === 'connected') {
      if (this.everConnected) {
        this.stats.reconnects++;
        // Callers may have dropped this instance from their view while the connection was away.
        if (this.lifeCycle === 'listening') void this.announce();
      }
      this.everConnected = true;
    }
    if (status === 'reconnecting') this.logger.warn('Redis connection lost; reconnecting (subscriptions are restored automatically).');
    else if (status === 'connected' && this.lifeCycle === 'listening' && this.stats.reconnects > 0) this.logger.log('Connected to Redis; subscriptions confirmed.');
  }

  private onMessage(channel: string, message: string): void {
    if (this.lifeCycle === 'closed' || this.lifeCycle === 'idle') return;
    const { envelopes, rejected } = decodeMessage(message, channel);
    for (const { error, refusable } of rejected) {
      if (refusable !== undefined && this.isRequestChannel(channel)) this.refuseUnreadable(refusable, error.message);
      else this.rejectInput(error.message);
    }
    for (const envelope of envelopes) {
      // Whatever happens below (a handler throwing synchronously included) must not reach the
      // Redis client's socket handler: it becomes that request's error reply, or a log line.
      try {
        this.dispatch(channel, envelope);
      } catch (error) {
        this.logger.error(`Could not handle a "${envelope.kind}" on "${channel}": ${(error as Error)?.stack ?? String(error)}`);
        if (envelope.kind === 'request' && this.replyAllowed(envelope.replyTo)) this.writerFor(envelope).error(error);
      }
    }
  }

  private dispatch(channel: string, envelope: Envelope): void {
    switch (envelope.kind) {
      case 'request':
        return this.onRequestArrived(channel, envelope);
      case 'event':
        return this.onEventArrived(channel, envelope);
      case 'ping':
        if (channel !== this.directChannel) break;
        this.stats.pings++;
        if (this.replyAllowed(envelope.replyTo)) {
          const pong: PongEnvelope = { v: 1, kind: 'pong', id: envelope.id, from: this.instanceId, inc: this.incarnation };
          void this.publishNow(envelope.replyTo, encodeEnvelope(pong)).catch(() => undefined);
        } else this.rejectInput(`Dropped a ping whose replyTo "${envelope.replyTo}" is not an inbox of namespace "${this.options.namespace}".`);
        return;
      case 'who':
        if (channel !== this.channels.who()) break;
        if (this.lifeCycle !== 'listening') return;
        if (this.replyAllowed(envelope.replyTo)) void this.publishNow(envelope.replyTo, encodeEnvelope(this.helloEnvelope(envelope.id))).catch(() => undefined);
        else this.rejectInput(`Dropped a who whose replyTo "${envelope.replyTo}" is not an inbox of namespace "${this.options.namespace}".`);
        return;
      default:
        break;
    }
    this.rejectInput(`Dropped a "${envelope.kind}" envelope on "${channel}": it does not belong there.`);
  }

  private isRequestChannel(channel: string): boolean {
    return channel === this.directChannel || channel.startsWith(`${this.options.namespace}:req:`);
  }

  private replyAllowed(replyTo: string): boolean {
    return this.options.replyToAnyChannel || this.channels.isInbox(replyTo);
  }

  /** A request that failed validation but says where to answer (a newer version, a bad header…). */
  private refuseUnreadable(request: RefusableRequest, reason: string): void {
    this.stats.requests++;
    if (!this.replyAllowed(request.replyTo)) return this.rejectInput(reason);
    this.stats.malformedMessages++;
    const message =
      request.code === BufferErrorCode.UnsupportedVersion
        ? `Instance "${this.instanceId}" speaks protocol version 1 and cannot run this request: ${reason}.`
        : `Instance "${this.instanceId}" refused a malformed request: ${reason}.`;
    this.stats.refused++;
    this.telemetry.refused('', '', request.id, '', {}, request.code);
    this.writerFor(request).refuse(request.code, message);
  }

  private onRequestArrived(channel: string, envelope: RequestEnvelope): void {
    if (!this.replyAllowed(envelope.replyTo)) {
      // Answering would publish onto a channel of the sender's choosing (amplification): only dropped.
      return this.rejectInput(`Dropped a request whose replyTo "${envelope.replyTo}" is not an inbox of namespace "${this.options.namespace}" (see the "replyToAnyChannel" option).`);
    }
    const receivedAt = Date.now();
    // The caller's remaining time, counted on this host's clock from arrival: no clock agreement needed.
    const deadline = envelope.ttl !== undefined ? receivedAt + envelope.ttl : envelope.deadline!;
    const route = this.requestRoutes.get(envelope.pattern);
    // This instance subscribes only the channels of the patterns it handles (and its direct channel).
    if (channel !== this.directChannel && channel !== route?.channel) {
      this.stats.requests++;
      this.stats.malformedMessages++;
      return this.refuse(envelope, BufferErrorCode.BadRequest, `The request for "${envelope.pattern}" arrived on "${channel}", the channel of another pattern.`);
    }
    if (this.lifeCycle !== 'listening' && channel === this.directChannel) {
      this.stats.requests++;
      return this.refuse(envelope, BufferErrorCode.ShuttingDown, `Instance "${this.instanceId}" is shutting down; ask another instance.`);
    }
    // A free slot runs the request at once, with no task closure (the common case), and no second
    // clock read: no time has passed since arrival.
    if (this.limiter.hasRoom) this.onRequest(envelope, channel, deadline, receivedAt, route);
    else if (!this.limiter.submit(() => this.onRequest(envelope, channel, deadline, Date.now(), route))) this.refuseOverloaded(envelope);
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
    this.refuse(
      envelope,
      BufferErrorCode.Overloaded,
      `Instance "${this.instanceId}" is overloaded: ${this.options.maxConcurrentHandlers} handlers running and ${this.options.maxQueuedHandlers} requests queued; retry later, add instances, or raise "maxConcurrentHandlers" / "maxQueuedHandlers".`,
    );
  }

  private refuse(envelope: RequestEnvelope, code: string, message: string): void {
    this.stats.refused++;
    this.telemetry.refused(envelope.pattern, '', envelope.id, envelope.from, envelope.headers, code);
    this.writerFor(envelope).refuse(code, message);
  }

  private rejectInput(message: string): void {
    this.stats.malformedMessages++;
    this.badInput.warn(message);
  }

  /** `route` is this instance's route for the request's pattern, looked up on arrival. */
  private onRequest(envelope: RequestEnvelope, channel: string, deadline: number, now: number, route: RequestRoute | undefined): void {
    this.stats.requests++;
    if (this.stopping) return this.refuse(envelope, BufferErrorCode.ShuttingDown, `Instance "${this.instanceId}" shut down before it could run the request.`);
    if (now > deadline) {
      // The caller is about to stop listening: say so rather than do dead work, or stay silent.
      this.stats.expired++;
      return this.refuse(envelope, BufferErrorCode.Expired, `The request reached instance "${this.instanceId}" (or waited there) past its deadline.`);
    }
    const handler = route?.handler;
    if (handler === undefined) {
      this.stats.unhandled++;
      return this.refuse(envelope, BufferErrorCode.NoHandler, `Instance "${this.instanceId}" has no handler for "${envelope.pattern}".`);
    }
    const context = this.contextFor(envelope, channel, deadline);
    const trace = this.telemetry.startProcess('request', envelope.pattern, channel, envelope.id, envelope.from, envelope.headers);
    // The run is the request's ReplyWriter too: one object per request.
    const run = new HandlerRun(this.runHost!, envelope, deadline, trace);
    this.active.set(run, undefined);
    if (trace === undefined && !this.hasProcessingHooks()) {
      // Nothing to run around the handler (no processing hook, no span): call Nest's handler proxy
      // (guards, pipes, interceptors and filters all run in it) and take its result, with no
      // wrapper promise per request.
      let result: unknown;
      try {
        result = handler(envelope.data, context);
      } catch (error) {
        return run.failed(error);
      }
      if (isPromiseLike(result)) run.follow(result);
      else run.produced(result);
      return;
    }
    this.runWrapped(run, handler, envelope, context, trace);
  }

  /** A handler run inside Nest's processing hooks and the handler's span (kept apart: the common path allocates none of its closures). */
  private runWrapped(run: HandlerRun, handler: MessageHandler, envelope: RequestEnvelope, context: BufferContext, trace: ProcessTrace | undefined): void {
    this.telemetry
      .runInContext(trace, () =>
        this.runHooked(context, async (runEndHook) => {
          run.endHook = runEndHook;
          run.produced(await handler(envelope.data, context));
        }),
      )
      .catch((error: unknown) => run.failed(error));
  }

  private onEventArrived(channel: string, envelope: EventEnvelope): void {
    if (channel !== this.channels.event(envelope.pattern)) {
      return this.rejectInput(`Dropped an event for "${envelope.pattern}" that arrived on "${channel}".`);
    }
    if (!this.limiter.submit(() => this.onEvent(envelope, channel))) {
      this.stats.overloaded++;
      this.badInput.warn(`Dropped event "${envelope.pattern}": ${this.options.maxConcurrentHandlers} handlers running and ${this.options.maxQueuedHandlers} queued.`);
    }
  }

  private onEvent(envelope: EventEnvelope, channel: string): void {
    this.stats.events++;
    if (this.stopping) return;
    if (envelope.deadline !== undefined && Date.now() > envelope.deadline) {
      // Also what stops a captured signed event from being replayed later.
      this.stats.expired++;
      this.badInput.warn(`Dropped event "${envelope.pattern}" received past its deadline (see "eventTtl").`);
      return;
    }
    const handler = this.eventRoutes.get(envelope.pattern);
    if (handler === undefined) return this.rejectInput(`No event handler for "${envelope.pattern}".`);
    const context = this.contextFor(envelope, channel, undefined);
    const trace = this.telemetry.startProcess('event', envelope.pattern, channel, envelope.id, envelope.from, envelope.headers);
    const token = {};
    let failed: string | undefined;
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      this.telemetry.endProcess(trace, failed);
      if (this.active.delete(token)) this.limiter.pump();
    };
    this.active.set(token, undefined);
    const fail = (error: unknown): void => {
      this.logger.error(`Event handler for "${envelope.pattern}" failed: ${(error as Error)?.message ?? String(error)}`);
      failed = (error as { code?: string } | null)?.code ?? 'error';
      settle();
    };
    this.telemetry.runInContext(trace, () => this.runHooked(context, async (runEndHook) => {
      const result: unknown = await handler(envelope.data, context);
      if (!isObservable(result)) {
        runEndHook();
        return settle();
      }
      const subscription = result.subscribe({ error: fail });
      subscription.add(() => {
        runEndHook();
        settle();
      });
      if (!subscription.closed && this.active.has(token)) this.active.set(token, subscription);
    })).catch(fail);
  }

  /** Whether a processing hook was set on this server (`setOnProcessingStartHook` / `setOnProcessingEndHook`). */
  private hasProcessingHooks(): boolean {
    const fields = this as unknown as ProcessingHookFields;
    return fields.onProcessingStartHook !== this.defaultStartHook || fields.onProcessingEndHook !== undefined;
  }

  /**
   * Nest's processing hooks (tracing and the like) around a handler, with whatever the installed
   * `@nestjs/microservices` offers (see `processing-hooks.ts`).
   */
  private runHooked(context: BaseRpcContext, fn: (runEndHook: () => void) => Promise<void>): Promise<void> {
    try {
      return Promise.resolve(runWithHooks(this, context, fn)) as Promise<void>;
    } catch (error) {
      // A processing hook that throws synchronously: that request's error, not the Redis listener's.
      return Promise.reject(error);
    }
  }


  private writerFor(envelope: { readonly replyTo: string; readonly id: string }): ReplyWriter {
    return new ReplyWriter(this.coalescer!, envelope.replyTo, envelope.id, this.fromJson, this.options.maxPayloadBytes, this.onReplyPublishError);
  }

  private contextFor(envelope: RequestEnvelope | EventEnvelope, channel: string, deadline: number | undefined): BufferContext {
    return new BufferContext({
      kind: envelope.kind,
      requestId: envelope.id,
      pattern: envelope.pattern,
      senderId: envelope.from,
      instanceId: this.instanceId,
      channel,
      headers: envelope.headers,
      deadline,
    });
  }
}

/** The members of Nest's `Server` that hold its processing hooks (absent on older versions). */
interface ProcessingHookFields {
  onProcessingStartHook?: unknown;
  onProcessingEndHook?: unknown;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** A request pattern this instance handles. */
interface RequestRoute {
  readonly handler: MessageHandler;
  /** The channel its requests arrive on (besides the direct channel). */
  readonly channel: string;
}

/** What every handler run of one server shares. */
interface HandlerRunHost {
  readonly coalescer: Coalescer;
  readonly fromJson: string;
  readonly maxPayloadBytes: number;
  readonly onPublishError: (error: Error, replyTo: string) => void;
  readonly telemetry: BufferTelemetry;
  /** Told once when the run is over. */
  readonly done: (run: ReplyWriter) => void;
  /** Told of a handler's stream still open once subscribed. */
  readonly track: (run: ReplyWriter, subscription: Subscription) => void;
}

/**
 * One handler run for one request, and its `ReplyWriter`: takes what the handler produced (a value
 * or a stream) to the reply, stops a stream still open at the deadline, and tells the server once
 * when the run is over. One object per request rather than a writer and closures.
 */
class HandlerRun extends ReplyWriter {
  /** Nest's processing end hook, when the run is wrapped in the hooks. */
  endHook: (() => void) | undefined;
  private expiry: ReturnType<typeof setTimeout> | undefined;
  private settled = false;

  constructor(
    private readonly host: HandlerRunHost,
    envelope: RequestEnvelope,
    private readonly deadline: number,
    private readonly trace: ProcessTrace | undefined,
  ) {
    super(host.coalescer, envelope.replyTo, envelope.id, host.fromJson, host.maxPayloadBytes, host.onPublishError);
  }

  /**
   * The handler's result: a plain value (Nest's proxy has already awaited a Promise) or an
   * Observable. Whatever throws on the way (a stream that throws on subscribe) ends this answer
   * with that error, never the caller of this method (a promise callback or the Redis listener).
   */
  produced(result: unknown): void {
    try {
      this.take(result);
    } catch (error) {
      this.failed(error);
    }
  }

  private take(result: unknown): void {
    if (!isObservable(result)) {
      // One reply, no stream to build.
      this.value(result);
      this.end();
      return this.settle();
    }
    const subscription = result.subscribe(this);
    // Runs on completion, error or unsubscribe; at once if the stream has already ended.
    subscription.add(() => this.settle());
    if (this.isEnded) {
      subscription.unsubscribe();
      return;
    }
    this.host.track(this, subscription);
    // Past the deadline nobody listens: stop the stream instead of doing dead work. Armed only for a
    // stream still open once subscribed (most handlers have answered by then).
    const remaining = this.deadline - Date.now();
    if (remaining > 0 && !this.settled) this.expiry = setTimeout(() => subscription.unsubscribe(), remaining);
  }

  failed(error: unknown): void {
    this.error(error);
    this.settle();
  }

  /** Takes the handler's promised result (the closures live in this small frame only). */
  follow(result: PromiseLike<unknown>): void {
    result.then(
      (value) => this.produced(value),
      (error: unknown) => this.failed(error),
    );
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.expiry !== undefined) clearTimeout(this.expiry);
    this.endHook?.();
    this.host.telemetry.endProcess(this.trace, this.errorType);
    this.host.done(this);
  }
}

/** Waits for `promise` at most `ms`, and never rejects: for the steps of a shutdown. */
function withinMs(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([promise.then(() => undefined, () => undefined), elapsed]).finally(() => clearTimeout(timer));
}
