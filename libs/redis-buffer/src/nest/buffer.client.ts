import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { connectable, Observable, ReplaySubject, type Subscriber } from 'rxjs';
import { channelPattern } from '../core/wire/channels.js';
import type { BufferHeaders } from '../core/wire/envelope.js';
import { CallbackError } from '../core/errors/callback.error.js';
import { InstancesMissingError } from '../core/errors/instances-missing.error.js';
import type { GatherSink } from '../core/gather/gatherer.js';
import { describeRejection, GuardedBus, type InboundRejection } from '../core/bus/guarded-bus.js';
import { BoundedLog } from '../core/logger.js';
import { InvalidOptionsError } from '../core/errors/invalid-options.error.js';
import { resolveBufferOptions, resolveCallOptions, type BufferCallOptions, type BufferGatherOptions, type BufferOptions, type ResolvedBufferOptions, type ResolvedCallOptions } from '../core/options.js';
import { createBus } from '../core/bus/create-bus.js';
import type { BusEvents, BusStatus } from '../core/bus/redis-bus.js';
import type { BufferReply, GatherResult } from '../core/gather/reply.js';
import type { InstanceInfo } from '../core/membership/membership.js';
import { Requester, type RequesterStats } from '../core/gather/requester.js';
import { BufferTelemetry, loadOpenTelemetry } from '../core/telemetry/telemetry.js';
import { DurablePublisher } from '../core/durable/durable-publisher.js';

type BufferClientEvents = { [K in keyof BusEvents]: (...args: BusEvents[K]) => void };

/**
 * The caller's side. Injected by `BufferModule`, or built by hand with `new BufferClient(options)`.
 *
 * Every call is cold: nothing is sent until the Observable is subscribed, and unsubscribing
 * cancels the request at once (its timers and routing entry go with it).
 */
export class BufferClient extends ClientProxy<BufferClientEvents, BusStatus> implements OnApplicationShutdown {
  readonly options: ResolvedBufferOptions;
  private readonly logger = new Logger(BufferClient.name);
  private readonly bus: GuardedBus;
  private readonly requester: Requester;
  private defaultCall: ResolvedCallOptions<unknown> | undefined;
  // ioredis reports every failed reconnect attempt; a Redis outage must not flood the logs.
  private readonly redisErrors = new BoundedLog(this.logger, 3, 30_000);
  private readonly badInbound = new BoundedLog(this.logger);
  /**
   * Durable messaging on Redis Streams: `publish` an entry every `@DurablePattern` group handles at
   * least once, even if it is down now; inspect and replay dead letters. (Not named `publish` on the
   * client itself: that is `ClientProxy`'s hook for `send`.)
   */
  readonly durable: DurablePublisher;

  constructor(options: BufferOptions = {}) {
    super();
    this.options = resolveBufferOptions(options);
    const redisBus = createBus(this.options, `rb-client:${this.options.instanceId}`);
    this.bus = new GuardedBus(redisBus, this.options, (reason, channel, length) => this.onInboundRejected(reason, channel, length));
    this.bus.on('status', (status) => this._status$.next(status));
    this.bus.on('error', (error) => this.onRedisError(error));
    const telemetry = new BufferTelemetry('client', this.options.namespace, this.options.instanceId);
    this.requester = new Requester(this.bus, this.options, this.logger, undefined, telemetry);
    this.durable = new DurablePublisher(this.options, telemetry, this.logger);
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

  /** The instances this client's view holds now, without asking Redis (`instances()` asks afresh). */
  knownInstances(): InstanceInfo[] {
    return this.requester.knownInstances();
  }

  /** This client's instance id, as handlers see it in `BufferContext.getSenderId()`. */
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

  /**
   * The live instances of the namespace with the patterns each answers, asked afresh: every
   * instance answers a `who` on the spot (a frozen one cannot, and is not listed).
   *
   * @example
   * ```ts
   * for (const { instanceId, patterns } of await buffer.instances()) console.log(instanceId, patterns);
   * ```
   */
  instances(): Promise<InstanceInfo[]> {
    return this.requester.instances();
  }

  /**
   * Nest's route string sorts an object pattern's keys by the process's locale; channel names must
   * be the same in every process and language, so object patterns are encoded with keys in code
   * point order (see docs/protocol.md). Instances map them back to Nest's routes.
   */
  protected override normalizePattern(pattern: unknown): string {
    return channelPattern(pattern);
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

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  override on<K extends keyof BufferClientEvents>(event: K, callback: BufferClientEvents[K]): void {
    this.bus.on(event, callback as never);
  }

  /** The underlying ioredis clients: `{ publisher, subscriber }`, or on a cluster `{ publisher: Cluster, subscribers }` (one per master, by `host:port`); throws before `connect`. */
  unwrap<T>(): T {
    return this.bus.unwrap() as T;
  }

  /**
   * Asks every instance and emits each reply with the instance that sent it, errors included.
   * Completes when the answer is known (see `BufferCallOptions`); errors with `InstancesMissingError`
   * if an instance that received the request went silent or left before finishing, with `BufferTimeoutError`
   * (carrying the replies that arrived) if `timeout` passes first, `NoRespondersError` at once if
   * nobody listens, `ConnectionLostError` if Redis goes away.
   *
   * @example
   * ```ts
   * buffer.scatter<number>('sessions.count', null).subscribe((reply) =>
   *   console.log(reply.instanceId, reply.ok ? reply.data : reply.error));
   * ```
   */
  scatter<T = unknown, TInput = unknown>(pattern: unknown, data: TInput, options?: BufferCallOptions<T>): Observable<BufferReply<T>> {
    return this.request<T, BufferReply<T>>(pattern, data, options, (subscriber) => new StreamSink<T, BufferReply<T>>(subscriber, pattern, false));
  }

  /**
   * `ClientProxy.send` with scatter-gather: emits every reply value from every instance and completes
   * when the answer is known. An error reply errors the stream with the handler's error payload, as
   * on any Nest transport (`RpcException` payloads arrive intact). `data` may be `undefined`.
   *
   * @example
   * ```ts
   * const owners = await lastValueFrom(buffer.send<string | null>('resource.find', 'a', { until: (r) => r.ok && r.data !== null }).pipe(toArray()));
   * ```
   */
  override send<TResult = unknown, TInput = unknown>(pattern: unknown, data: TInput, options?: BufferCallOptions<TResult>): Observable<TResult> {
    return this.request<TResult, TResult>(pattern, data, options, (subscriber) => new StreamSink<TResult, TResult>(subscriber, pattern, true));
  }

  /**
   * Asks every instance and resolves with everything they answered and why it stopped. Resolves
   * with `completedBy: 'timeout'` (a partial result) rather than rejecting when the deadline passes;
   * rejects with `NoRespondersError`, `ConnectionLostError` or `PayloadTooLargeError`. `onReply`
   * sees each reply as it arrives; `signal` cancels.
   *
   * @example
   * ```ts
   * const { replies, expected, completedBy } = await buffer.gather<number>('sessions.count', null);
   * const total = replies.reduce((sum, reply) => sum + reply.data, 0);
   * ```
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

  /** Broadcasts an event to every instance's `@BufferedEvent(pattern)` handlers; emits Redis's receiver count. */
  override emit<TResult = number, TInput = unknown>(pattern: unknown, data: TInput, options?: { headers?: Record<string, string> }): Observable<TResult> {
    const headers = resolveCallOptions(this.options, { headers: options?.headers }).headers;
    const source = new Observable<TResult>((subscriber) => {
      this.requester.emit(this.normalizePattern(pattern), data, headers).then(
        (receivers) => {
          subscriber.next(receivers as TResult);
          subscriber.complete();
        },
        (error: unknown) => subscriber.error(error),
      );
    });
    // Like ClientProxy.emit: the event is sent even if nobody subscribes, and the outcome is replayed.
    const hot = connectable(source, { connector: () => new ReplaySubject<TResult>(), resetOnDisconnect: false });
    hot.connect();
    return hot;
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const subscription = this.send(packet.pattern, packet.data).subscribe({
      next: (response) => callback({ response }),
      error: (err: unknown) => callback({ err }),
      complete: () => callback({ isDisposed: true }),
    });
    return () => subscription.unsubscribe();
  }

  protected dispatchEvent<T = unknown>(packet: ReadPacket): Promise<T> {
    return this.requester.emit(this.normalizePattern(packet.pattern), packet.data) as Promise<T>;
  }

  private request<T, R>(pattern: unknown, data: unknown, options: BufferCallOptions<T> | undefined, makeSink: (subscriber: Subscriber<R>) => GatherSink<T>): Observable<R> {
    return new Observable<R>((subscriber) => {
      try {
        if (pattern === undefined || pattern === null) throw new TypeError('A pattern is required.');
        // The defaults, resolved once: most calls pass no options.
        const call = options === undefined ? ((this.defaultCall ??= resolveCallOptions(this.options)) as ResolvedCallOptions<T>) : resolveCallOptions(this.options, options);
        // Unsubscribing cancels the request (its handle is its own teardown); so does an error,
        // which rxjs follows with the teardown.
        return this.requester.request<T>(this.normalizePattern(pattern), data, call, makeSink(subscriber));
      } catch (error) {
        subscriber.error(error);
        return undefined;
      }
    });
  }

  private onInboundRejected(reason: InboundRejection, channel: string, length: number): void {
    const stats = this.requester.stats;
    if (reason === 'oversized') stats.malformedMessages++;
    else stats.forgedMessages++;
    this.badInbound.warn(describeRejection(reason, channel, length, this.options.maxPayloadBytes));
  }

  private onRedisError(error: Error): void {
    this.redisErrors.warn(`Redis: ${error.message}`);
  }
}

/**
 * Between a request and the Observable of `send` (reply values; an error reply errors the stream)
 * or `scatter` (every reply, errors included): one object per request rather than closures.
 */
class StreamSink<T, R> implements GatherSink<T> {
  constructor(
    private readonly subscriber: Subscriber<R>,
    private readonly pattern: unknown,
    /** `send`: values only. */
    private readonly valuesOnly: boolean,
  ) {}

  next(reply: BufferReply<T>): void {
    if (!this.valuesOnly) return this.subscriber.next(reply as R);
    if (reply.ok) return this.subscriber.next(reply.data as unknown as R);
    // Ends the stream, and rxjs then runs its teardown: the request is cancelled.
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

export type { BufferHeaders };
