import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { connectable, Observable, ReplaySubject } from 'rxjs';
import { channelPattern } from '../core/wire/channels.js';
import type { BufferHeaders } from '../core/wire/envelope.js';
import type { BufferCallOptions, BufferGatherOptions, BufferOptions, ResolvedBufferOptions } from '../core/options.js';
import type { BusEvents, BusStatus } from '../core/bus/redis-bus.js';
import type { BufferReply, GatherResult } from '../core/gather/reply.js';
import type { InstanceInfo } from '../core/membership/membership.js';
import type { RequesterStats } from '../core/gather/requester.js';
import { Caller } from '../core/gather/caller.js';
import type { DurablePublisher } from '../core/durable/durable-publisher.js';

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
  // The calls themselves: the same code path as a plain Node caller's.
  private readonly caller: Caller;
  /**
   * Durable messaging on Redis Streams: `publish` an entry every `@DurablePattern` group handles at
   * least once, even if it is down now; inspect and replay dead letters. (Not named `publish` on the
   * client itself: that is `ClientProxy`'s hook for `send`.)
   */
  readonly durable: DurablePublisher;

  constructor(options: BufferOptions = {}) {
    super();
    this.caller = new Caller(options, { logger: this.logger });
    this.options = this.caller.options;
    this.durable = this.caller.durable;
    this.caller.on('status', (status) => this._status$.next(status));
  }

  /** The connection's state now: `connected` means both connections are up and the inbox subscription is confirmed. */
  get connectionStatus(): BusStatus {
    return this.caller.connectionStatus;
  }

  /** The instances this client's view holds now, without asking Redis (`instances()` asks afresh). */
  knownInstances(): InstanceInfo[] {
    return this.caller.knownInstances();
  }

  /** This client's instance id, as handlers see it in `BufferContext.getSenderId()`. */
  get instanceId(): string {
    return this.options.instanceId;
  }

  /** Counters: requests sent, late / duplicate replies dropped, malformed messages dropped. */
  get stats(): Readonly<RequesterStats> {
    return this.caller.stats;
  }

  /** How many requests are open right now. */
  get inFlight(): number {
    return this.caller.inFlight;
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
    return this.caller.instances();
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
    return this.caller.connect();
  }

  /** Fails open requests with `ConnectionLostError` and disconnects. */
  close(): Promise<void> {
    return this.caller.close();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }

  override on<K extends keyof BufferClientEvents>(event: K, callback: BufferClientEvents[K]): void {
    this.caller.on(event, callback as never);
  }

  /** The underlying ioredis clients: `{ publisher, subscriber }`, or on a cluster `{ publisher: Cluster, subscribers }` (one per master, by `host:port`); throws before `connect`. */
  unwrap<T>(): T {
    return this.caller.unwrap<T>();
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
    return this.caller.scatter<T, TInput>(pattern, data, options);
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
    return this.caller.send<TResult, TInput>(pattern, data, options);
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
    return this.caller.gather<T, TInput>(pattern, data, options);
  }

  /**
   * Broadcasts an event to every instance's `@BufferedEvent(pattern)` handlers (exact, and wildcard
   * bindings matching the topic); emits Redis's count of receiving instances (see `Caller.emit`).
   */
  override emit<TResult = number, TInput = unknown>(pattern: unknown, data: TInput, options?: { headers?: Record<string, string> }): Observable<TResult> {
    const source = new Observable<TResult>((subscriber) => {
      this.caller.emit(pattern, data, options).then(
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
    return this.caller.emit(packet.pattern, packet.data) as Promise<T>;
  }
}

export type { BufferHeaders };
