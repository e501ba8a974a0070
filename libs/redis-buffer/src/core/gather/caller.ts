import { Observable, type Subscriber } from 'rxjs';
import { channelPattern } from '../wire/channels.js';
import type { BufferHeaders } from '../wire/envelope.js';
import { CallbackError } from '../errors/callback.error.js';
import { InstancesMissingError } from '../errors/instances-missing.error.js';
import { InvalidOptionsError } from '../errors/invalid-options.error.js';
import type { GatherSink } from './gather-sink.js';
import { describeRejection, GuardedBus, type InboundRejection } from '../bus/guarded-bus.js';
import { createBus } from '../bus/create-bus.js';
import type { BusClients, BusEvents, BusStatus, RedisBus } from '../bus/redis-bus.js';
import { BoundedLog, REDIS_ERROR_LOG_BOUND, type BufferLogger } from '../logger.js';
import { resolveBufferOptions, resolveCallOptions, type BufferCallOptions, type BufferGatherOptions, type BufferOptions, type ResolvedBufferOptions, type ResolvedCallOptions } from '../options.js';
import type { BufferReply, GatherResult } from './reply.js';
import type { InstanceInfo } from '../membership/membership.js';
import { Requester, type RequesterStats } from './requester.js';
import type { RequestHandle } from './request-gatherer.js';
import { redisServerAddress } from '../telemetry/server-address.js';
import { BufferTelemetry, loadOpenTelemetry } from '../telemetry/telemetry.js';
import { DurablePublisher } from '../durable/durable-publisher.js';
import type { Clock } from '../clock.js';
import { checkSeams, rejectUnknownKeys } from '../option-checks.js';

/** An event's options: headers only. */
const EMIT_OPTION_KEYS = { headers: true } as const;
/** Every key of `CallerSeams` (checked at compile time to stay complete). */
const CALLER_SEAM_KEYS = { bus: true, clock: true, logger: true } as const satisfies Record<keyof CallerSeams, true>;

/** The seams of a `Caller`: what a test, a simulation or the Nest layer puts in place of the defaults. */
export interface CallerSeams {
  /** The Redis seam. @default the bus the options ask for (`createBus`) */
  readonly bus?: RedisBus;
  /** Time and timers. @default the system clock */
  readonly clock?: Clock;
  /** @default `console` */
  readonly logger?: BufferLogger;
}

/**
 * The caller's side, without Nest: scatter-gather, plain request-reply, events and membership over
 * the core `Requester`. `BufferClient` (the Nest `ClientProxy`) is this with Nest's names around it:
 * same options, same semantics.
 *
 * Every stream-shaped call is cold: nothing is sent until the Observable is subscribed, and
 * unsubscribing cancels the request at once (its timers and routing entry go with it).
 *
 * @example
 * ```ts
 * const caller = new Caller({ redis: 'redis://127.0.0.1:6379' });
 * const { replies, expected, completedBy } = await caller.gather<number>('sessions.count', null);
 * await caller.close();
 * ```
 */
export class Caller {
  readonly options: ResolvedBufferOptions;
  /**
   * Durable messaging on Redis Streams: `publish` an entry every `@DurablePattern` group handles at
   * least once, even if it is down now; inspect and replay dead letters.
   */
  readonly durable: DurablePublisher;
  private readonly bus: GuardedBus;
  private readonly requester: Requester;
  private defaultCall: ResolvedCallOptions<unknown> | undefined;
  // ioredis reports every failed reconnect attempt; a Redis outage must not flood the logs.
  private readonly redisErrors: BoundedLog;
  private readonly badInbound: BoundedLog;

  constructor(options: BufferOptions = {}, seams: CallerSeams = {}) {
    this.options = resolveBufferOptions(options);
    checkSeams(seams, CALLER_SEAM_KEYS);
    const logger = seams.logger ?? console;
    this.redisErrors = new BoundedLog(logger, REDIS_ERROR_LOG_BOUND.burst, REDIS_ERROR_LOG_BOUND.windowMs);
    this.badInbound = new BoundedLog(logger);
    const redisBus = seams.bus ?? createBus(this.options, `rb-client:${this.options.instanceId}`);
    this.bus = new GuardedBus(redisBus, this.options, (reason, channel, length) => this.onInboundRejected(reason, channel, length));
    this.bus.on('error', (error) => this.redisErrors.warn(`Redis: ${error.message}`));
    const telemetry = new BufferTelemetry('client', this.options.namespace, this.options.instanceId, redisServerAddress(this.options));
    this.requester = new Requester(this.bus, this.options, logger, seams.clock, telemetry);
    this.durable = new DurablePublisher(this.options, telemetry, logger);
    // Traces and metrics when the app has @opentelemetry/api (a no-op without an SDK registered).
    void loadOpenTelemetry().then((api) => {
      if (api === undefined) return;
      const { counters, gauges } = this.requester.observedCounters();
      telemetry.attach(api, counters, gauges);
    });
  }

  /** The connection's state now: `connected` means both connections are up and the inbox subscription is confirmed. */
  get connectionStatus(): BusStatus {
    return this.bus.status;
  }

  /** This caller's instance id, as handlers see it in their context's `senderId`. */
  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Counters: requests sent, late / duplicate replies dropped, malformed messages dropped. */
  get stats(): Readonly<RequesterStats> {
    return this.requester.stats;
  }

  /** How many requests are open right now. */
  get inFlight(): number {
    return this.requester.inFlight;
  }

  /** The instances this caller's view holds now, without asking Redis (`instances()` asks afresh). */
  knownInstances(): InstanceInfo[] {
    return this.requester.knownInstances();
  }

  /**
   * The live instances of the namespace with the patterns each answers, asked afresh: every
   * instance answers a `who` on the spot (a frozen one cannot, and is not listed).
   */
  instances(): Promise<InstanceInfo[]> {
    return this.requester.instances();
  }

  /**
   * Connects to Redis, subscribes the inbox, and learns which instances are there (one `who` round,
   * at most half of `livenessTimeout`). Called on first use; call it yourself to fail fast at start-up.
   */
  connect(): Promise<void> {
    return this.requester.start();
  }

  /** Fails open requests with `ConnectionLostError` and disconnects. */
  async close(): Promise<void> {
    await this.requester.close();
    await Promise.all([this.bus.close(), this.durable.close()]);
  }

  /** Listens to the connection's events (`status`, `error`, `subscriberLost`). */
  on<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this {
    this.bus.on(event, listener as never);
    return this;
  }

  /** The underlying ioredis clients: `{ publisher, subscriber }`, or on a cluster `{ publisher: Cluster, subscribers }`; throws before `connect`. */
  unwrap<T = BusClients>(): T {
    return this.bus.unwrap() as T;
  }

  /**
   * Asks every instance and emits each reply with the instance that sent it, errors included.
   * Completes when the answer is known (see `BufferCallOptions`); errors with `InstancesMissingError`
   * if an instance that received the request went silent or left before finishing, with `BufferTimeoutError`
   * (carrying the replies that arrived) if `timeout` passes first, `NoRespondersError` at once if
   * nobody listens, `ConnectionLostError` if Redis goes away.
   */
  scatter<T = unknown, TInput = unknown>(pattern: unknown, data: TInput, options?: BufferCallOptions<T>): Observable<BufferReply<T>> {
    return this.request<T, BufferReply<T>>(pattern, data, options, (subscriber) => new StreamSink<T, BufferReply<T>>(subscriber, pattern, false));
  }

  /**
   * Emits every reply value from every instance and completes when the answer is known. An error
   * reply errors the stream with the handler's error payload. `data` may be `undefined`.
   */
  send<TResult = unknown, TInput = unknown>(pattern: unknown, data: TInput, options?: BufferCallOptions<TResult>): Observable<TResult> {
    return this.request<TResult, TResult>(pattern, data, options, (subscriber) => new StreamSink<TResult, TResult>(subscriber, pattern, true));
  }

  /**
   * Asks every instance and resolves with everything they answered and why it stopped. Resolves
   * with `completedBy: 'timeout'` (a partial result) rather than rejecting when the deadline passes;
   * rejects with `NoRespondersError`, `ConnectionLostError` or `PayloadTooLargeError`. `onReply`
   * sees each reply as it arrives; `signal` cancels.
   */
  gather<T = unknown, TInput = unknown>(pattern: unknown, data: TInput, options?: BufferGatherOptions<T>): Promise<GatherResult<T>> {
    const { onReply, signal, ...callOptions } = options ?? {};
    if (onReply !== undefined && typeof onReply !== 'function') return Promise.reject(new InvalidOptionsError('onReply', 'must be a function (reply) => void'));
    if (signal !== undefined && !(signal instanceof AbortSignal)) return Promise.reject(new InvalidOptionsError('signal', 'must be an AbortSignal'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<GatherResult<T>>((resolve, reject) => {
      const onAbort = (): void => {
        subscription.unsubscribe();
        reject(signal!.reason);
      };
      const settle = <V>(fn: (value: V) => void) => (value: V): void => {
        signal?.removeEventListener('abort', onAbort);
        fn(value);
      };
      const subscription = this.request<T, never>(pattern, data, callOptions, () => ({
        next: (reply) => {
          if (onReply === undefined) return;
          try {
            onReply(reply);
          } catch (error) {
            // The caller's callback failed: end this request with it, and nothing else.
            subscription.unsubscribe();
            settle(reject)(new CallbackError('onReply', String(pattern), error));
          }
        },
        complete: settle(resolve),
        fail: settle(reject),
      })).subscribe({ error: settle(reject) });
      if (!subscription.closed) signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Broadcasts an event to every instance's event handlers for `pattern` (a topic: exact handlers, and
   * wildcard ones the caller knows of that match it); resolves with Redis's count of receivers, in
   * instances (an instance reached on several of its bindings' channels counts once).
   */
  emit(pattern: unknown, data: unknown, options?: { headers?: BufferHeaders }): Promise<number> {
    try {
      if (options !== undefined && options !== null && typeof options === 'object') rejectUnknownKeys(options, EMIT_OPTION_KEYS);
      const headers = resolveCallOptions(this.options, { headers: options?.headers }).headers;
      return this.requester.emit(channelPattern(pattern), data, headers);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private request<T, R>(pattern: unknown, data: unknown, options: BufferCallOptions<T> | undefined, makeSink: (subscriber: Subscriber<R>) => GatherSink<T>): Observable<R> {
    return new Observable<R>((subscriber) => {
      try {
        if (pattern === undefined || pattern === null) throw new TypeError('A pattern is required.');
        // The defaults, resolved once: most calls pass no options.
        const call = options === undefined ? ((this.defaultCall ??= resolveCallOptions(this.options)) as ResolvedCallOptions<T>) : resolveCallOptions(this.options, options);
        // Unsubscribing cancels the request (its handle is its own teardown); so does an error,
        // which rxjs follows with the teardown.
        const sink = makeSink(subscriber);
        const handle = this.requester.request<T>(channelPattern(pattern), data, call, sink);
        if (sink instanceof StreamSink) sink.handle = handle;
        return handle;
      } catch (error) {
        subscriber.error(error);
        return undefined;
      }
    });
  }

  private onInboundRejected(reason: InboundRejection, channel: string, length: number): void {
    const stats = this.requester.stats;
    if (reason === 'oversized') stats.malformedMessages++;
    else if (reason === 'replayed' || reason === 'stale') stats.replayedMessages++;
    else stats.forgedMessages++;
    this.badInbound.warn(describeRejection(reason, channel, length, this.options));
  }
}

/**
 * Between a request and the Observable of `send` (reply values; an error reply errors the stream)
 * or `scatter` (every reply, errors included): one object per request rather than closures.
 */
class StreamSink<T, R> implements GatherSink<T> {
  /** The request, once made (no reply can arrive before): `send` ends it on an error reply. */
  handle: RequestHandle | undefined;

  constructor(
    private readonly subscriber: Subscriber<R>,
    private readonly pattern: unknown,
    /** `send`: values only. */
    private readonly valuesOnly: boolean,
  ) {}

  next(reply: BufferReply<T>): void {
    if (!this.valuesOnly) return this.subscriber.next(reply as R);
    if (reply.ok) return this.subscriber.next(reply.data as unknown as R);
    // The request fails with the reply's error (its span and duration say so, not "cancelled"),
    // which errors the stream with it; rxjs's teardown then finds the request ended.
    if (this.handle !== undefined) return this.handle.fail(reply.error as Error);
    this.subscriber.error(reply.error);
  }

  complete(result: GatherResult<T>, timedOut?: Error): void {
    endStream(this.subscriber, this.pattern, result, timedOut);
  }

  fail(error: Error): void {
    this.subscriber.error(error);
  }
}

/**
 * How a stream-shaped call ends: completes when the answer is whole, errors with the reason when it
 * is not (`BufferTimeoutError`, or `InstancesMissingError` when instances went silent or left).
 */
function endStream<T>(subscriber: { error(error: unknown): void; complete(): void }, pattern: unknown, result: GatherResult<T>, timedOut: Error | undefined): void {
  if (timedOut !== undefined) return subscriber.error(timedOut);
  if (result.completedBy === 'all' && result.missing.length > 0) {
    return subscriber.error(new InstancesMissingError(String(pattern), [...result.replies, ...result.errors], result.expected, result.finished, result.missing, result.missingReasons));
  }
  subscriber.complete();
}
