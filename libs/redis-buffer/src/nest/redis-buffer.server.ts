import { Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import { channelPatternOfRoute } from '../core/wire/channels.js';
import { checkBindingPattern } from '../core/wire/topic.js';
import type { BufferOptions, ResolvedBufferOptions } from '../core/options.js';
import type { BusEvents, BusStatus } from '../core/bus/redis-bus.js';
import type { DurableConsumer } from '../core/durable/durable-consumer.js';
import { Responder } from '../core/respond/responder.js';
import type { ResponderStats } from '../core/respond/responder-stats.js';
import { BUFFER_TRANSPORT } from './buffer.constants.js';
import { BufferContext } from './buffer.context.js';
import { isDurableHandler, startDurableHandlers } from './durable-handlers.js';
import { runWithHooks } from './processing-hooks.js';

/** Counters for monitoring a transport; they only ever grow. */
export type BufferServerStats = ResponderStats;

type BufferServerEvents = { [K in keyof BusEvents]: (...args: BusEvents[K]) => void };

type HandlerWithChain = MessageHandler & { next?: MessageHandler };

/**
 * The server side: plug it into Nest with
 * `app.connectMicroservice({ strategy: new RedisBufferTransport(options) })`.
 *
 * A thin adapter over the core `Responder`, which holds the protocol (admission, refusals, drain,
 * membership answers): each `@BufferedPattern` / `@BufferedEvent` handler Nest registers becomes a
 * responder handler (Nest's proxy around it runs guards, pipes, interceptors and filters), Nest's
 * processing hooks run around each handler, and `@DurablePattern` handlers are consumed from
 * streams beside it (see `durable-handlers.ts`).
 */
export class RedisBufferTransport extends Server<BufferServerEvents, BusStatus> implements CustomTransportStrategy {
  override readonly transportId = BUFFER_TRANSPORT;
  protected override readonly logger = new Logger(RedisBufferTransport.name);
  readonly options: ResolvedBufferOptions;
  /** Random per transport object: tells this process from an earlier one with the same `instanceId`. */
  readonly incarnation: string;
  readonly stats: BufferServerStats;
  private readonly responder: Responder<BufferContext>;
  // Event handlers live apart from request handlers, so one pattern can have both.
  private readonly eventHandlers = new Map<string, HandlerWithChain>();
  // Durable half (@DurablePattern handlers on Redis Streams): see durable-handlers.ts.
  private durable: DurableConsumer | undefined;
  // Nest's own do-nothing start hook, as this server was built with it: while it is still the one
  // set (and no end hook is), handlers run without the processing-hook wrapper.
  private readonly defaultStartHook: unknown = (this as unknown as ProcessingHookFields).onProcessingStartHook;

  constructor(options: BufferOptions = {}) {
    super();
    this.responder = new Responder<BufferContext>(options, {
      logger: this.logger,
      context: (message) => new BufferContext(message),
      runAround: {
        active: () => this.hasProcessingHooks(),
        run: (context, handler) => runWithHooks(this, context, handler),
      },
    });
    this.options = this.responder.options;
    this.incarnation = this.responder.incarnation;
    this.stats = this.responder.stats;
    this.responder.on('status', (status) => this._status$.next(status));
  }

  /** The connection's state now: `connected` means both connections are up and every subscription is confirmed. */
  get connectionStatus(): BusStatus {
    return this.responder.connectionStatus;
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
    return this.responder.activeRequests;
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
    // Nest's event handler proxy runs the handlers chained after it.
    while (tail.next !== undefined) tail = tail.next as HandlerWithChain;
    tail.next = callback;
  }

  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      // Nest keys its maps by its own route; the responder by the pattern's channel form (what travels).
      for (const [route, handler] of this.messageHandlers) {
        if (handler.isEventHandler) continue;
        checkObjectRoute(route);
        this.responder.handle(channelPatternOfRoute(route), handler);
      }
      for (const [route, handler] of this.eventHandlers) {
        if (isDurableHandler(handler)) continue;
        checkObjectRoute(route);
        this.responder.onEvent(channelPatternOfRoute(route), handler);
      }
      await this.responder.listen();
      // @DurablePattern handlers are event handlers on routes of their own, consumed from streams.
      this.durable = await startDurableHandlers({
        options: this.options,
        handlers: this.eventHandlers,
        logger: this.logger,
        runWithProcessingHooks: (context, fn) => runWithHooks(this, context, fn),
        transformToObservable: (result) => this.transformToObservable(result) as Observable<unknown>,
        telemetry: this.responder.telemetry,
      });
      callback();
    } catch (error) {
      callback(error);
    }
  }

  /** Drains, then disconnects (see `Responder.close`); the durable consumer finishes or releases its entries meanwhile. */
  async close(): Promise<void> {
    const state = this.responder.state;
    if (state === 'draining' || state === 'closed') return;
    await this.responder.close(this.durable?.close());
  }

  on<K extends keyof BufferServerEvents>(event: K, callback: BufferServerEvents[K]): void {
    this.responder.on(event, callback as never);
  }

  /** The underlying ioredis clients: `{ publisher, subscriber }`, or on a cluster `{ publisher: Cluster, subscribers }` (one per master, by `host:port`); throws before `listen`. */
  unwrap<T>(): T {
    if (!this.responder.isStarted) {
      throw new Error('Not initialized: call app.startAllMicroservices() (or listen()) before unwrap().');
    }
    return this.responder.unwrap<T>();
  }

  /** Whether a processing hook was set on this server (`setOnProcessingStartHook` / `setOnProcessingEndHook`). */
  private hasProcessingHooks(): boolean {
    const fields = this as unknown as ProcessingHookFields;
    return fields.onProcessingStartHook !== this.defaultStartHook || fields.onProcessingEndHook !== undefined;
  }
}

/** The members of Nest's `Server` that hold its processing hooks (absent on older versions). */
interface ProcessingHookFields {
  onProcessingStartHook?: unknown;
  onProcessingEndHook?: unknown;
}

/**
 * Nest hands object patterns over as their JSON route: a wildcard inside one (`{ cmd: 'order.*' }`)
 * is refused at start-up as the core refuses it (`checkBindingPattern`), not bound as a literal.
 */
function checkObjectRoute(route: string): void {
  if (!route.startsWith('{')) return;
  let pattern: unknown;
  try {
    pattern = JSON.parse(route);
  } catch {
    return;
  }
  checkBindingPattern(pattern);
}
