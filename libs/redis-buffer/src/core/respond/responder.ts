import { BufferChannels } from '../wire/channels.js';
import { Coalescer } from '../bus/coalescer.js';
import { createBus } from '../bus/create-bus.js';
import { GuardedBus } from '../bus/guarded-bus.js';
import type { BusEvents, BusStatus, RedisBus } from '../bus/redis-bus.js';
import { laterTurn, systemClock, type Clock } from '../clock.js';
import { type Envelope, type EventEnvelope } from '../wire/envelope.js';
import { decodeMessage } from '../wire/decode.js';
import { BufferErrorCode } from '../errors/buffer.error.js';
import { endsStartUp } from '../errors/start-failure.js';
import { INSTANCE_NEEDS } from '../bus/permission-check.js';
import { BoundedLog, REDIS_ERROR_LOG_BOUND, type BufferLogger } from '../logger.js';
import { resolveBufferOptions, type BufferOptions, type ResolvedBufferOptions } from '../options.js';
import { redisServerAddress } from '../telemetry/server-address.js';
import { BufferTelemetry, loadOpenTelemetry } from '../telemetry/telemetry.js';
import { ActiveWork } from './active-work.js';
import { HandlerInvoker } from './handler-invoker.js';
import type { MessageContext } from './message-context.js';
import { Presence } from './presence.js';
import { StartupHold } from './startup-hold.js';
import { Refusals } from './refusals.js';
import { ReplyResend } from './reply-resend.js';
import { ReplyWriter } from './reply-writer.js';
import { RequestAdmission } from './request-admission.js';
import { emptyResponderStats, responderCounters, responderGauges, type ResponderStats } from './responder-stats.js';
import { within } from '../async/bounded-wait.js';
import { InboundRoutes, type EventRoute } from './inbound-routes.js';
import { checkSeams } from '../option-checks.js';
import { RESPONDER_SEAM_KEYS, type ResponderHandler, type ResponderSeams, type ResponderState } from './responder-seams.js';

export type { ResponderHandler, ResponderSeams, ResponderState, RunAround } from './responder-seams.js';

/**
 * The instance's side of the protocol, without Nest: the mirror of the caller's `Requester`.
 *
 * It subscribes one channel per request pattern and per event pattern, its own direct channel and
 * the `who` channel, announces itself, and answers each request on the request's `replyTo`: with the
 * handler's values, its error, or a refusal (expired, unsupported, bad request, no handler,
 * overloaded, shutting down). It never stays silent to a request it can address.
 *
 * @example
 * ```ts
 * const responder = new Responder({ redis: 'redis://127.0.0.1:6379', instanceId: 'worker-1' });
 * responder.handle('sessions.count', () => sessions.size);
 * responder.onEvent('cache.invalidate', (key) => cache.delete(key as string));
 * await responder.listen();
 * process.once('SIGTERM', () => void responder.close());
 * ```
 */
export class Responder<C = MessageContext> {
  readonly options: ResolvedBufferOptions;
  readonly stats: ResponderStats = emptyResponderStats();
  readonly telemetry: BufferTelemetry;
  private readonly channels: BufferChannels;
  private readonly directChannel: string;
  private readonly fromJson: string;
  private readonly clock: Clock;
  private readonly logger: BufferLogger;
  // The bus given in the seams, until `listen()` guards it.
  private readonly pendingBus: RedisBus | undefined;
  private bus: GuardedBus | undefined;
  private coalescer: Coalescer | undefined;
  // Which handler an inbound request or event reaches, exact patterns and topic wildcards.
  private readonly routes: InboundRoutes<C>;
  private workChannels: string[] = [];
  // Messages that arrived between the subscription and `listening`: never dropped unanswered.
  private readonly early: StartupHold;
  // What is being handled, and the limiter that queues what has no slot.
  private readonly work: ActiveWork;
  private readonly pendingListeners: Array<[keyof BusEvents, (...args: never[]) => void]> = [];
  private readonly badInput: BoundedLog;
  private readonly redisErrors: BoundedLog;
  private lifeCycle: ResponderState = 'starting';
  // Wall-clock time `listen()` began: a takeover notice older than this is a replay.
  private startedAt = 0;
  // Set once the shutdown drain has run out: what is still queued or running is refused or stopped.
  private stopping = false;
  private everConnected = false;
  // Hello, pong, bye, the thaw and cut-off watches and the unique-id check: what callers learn of this instance.
  private readonly presence: Presence;
  // Admission's other side: refusals, and input dropped unanswered.
  private readonly refusals: Refusals;
  // Calls the handlers of what admission let through.
  private readonly invoker: HandlerInvoker<C>;
  // Whether, and when, a request that arrived runs.
  private readonly admission: RequestAdmission<C>;
  // Replies whose PUBLISH failed while the connection was away, sent again once it is back.
  private readonly resend: ReplyResend;

  constructor(options: BufferOptions = {}, seams: ResponderSeams<C> = {}) {
    this.options = resolveBufferOptions(options);
    checkSeams(seams, RESPONDER_SEAM_KEYS);
    this.clock = seams.clock ?? systemClock;
    this.logger = seams.logger ?? console;
    this.pendingBus = seams.bus;
    this.channels = new BufferChannels(this.options.namespace);
    this.directChannel = this.channels.direct(this.options.instanceId);
    this.fromJson = JSON.stringify(this.options.instanceId);
    this.badInput = new BoundedLog(this.logger, undefined, undefined, () => this.clock.now());
    this.redisErrors = new BoundedLog(this.logger, REDIS_ERROR_LOG_BOUND.burst, REDIS_ERROR_LOG_BOUND.windowMs, () => this.clock.now());
    this.presence = new Presence({
      instanceId: this.options.instanceId,
      namespace: this.options.namespace,
      livenessTimeout: this.options.livenessTimeout,
      channels: this.channels,
      clock: this.clock,
      logger: this.logger,
      badInput: this.badInput,
      patterns: () => [...this.routes.requests.keys()],
      events: () => [...this.routes.events.keys()],
      stampMembership: this.options.signingKeys.length > 0,
      noticedCutOff: () => void this.stats.cutOffs++,
    });
    this.work = new ActiveWork(this.options.maxConcurrentHandlers, this.options.maxQueuedHandlers);
    this.work.becameBusy = () => this.presence.wakeBeats();
    this.early = new StartupHold(this.options.maxQueuedHandlers);
    const telemetry = (this.telemetry = new BufferTelemetry('server', this.options.namespace, this.options.instanceId, redisServerAddress(this.options)));
    this.resend = new ReplyResend(this.clock, () => this.bus?.status === 'connected', laterTurn(this.clock), this.stats, this.badInput);
    this.refusals = new Refusals(this.options, this.channels, this.stats, telemetry, this.badInput, this.fromJson, this.resend, () => this.clock.now());
    this.routes = new InboundRoutes(this.channels, this.options.instanceId, this.refusals, this.stats, () => this.clock.now());
    const { instanceId, maxPayloadBytes } = this.options;
    const settings = { instanceId, fromJson: this.fromJson, maxPayloadBytes, clock: this.clock, delivery: this.resend };
    this.invoker = new HandlerInvoker(settings, telemetry, this.work, this.logger, seams.context, seams.runAround);
    this.admission = new RequestAdmission({
      instanceId,
      directChannel: this.directChannel,
      clock: this.clock,
      stats: this.stats,
      routes: this.routes,
      limiter: this.work.limiter,
      refusals: this.refusals,
      invoker: this.invoker,
      cutOff: this.presence.cutOff,
      listening: () => this.lifeCycle === 'listening',
      stopping: () => this.stopping,
    });
    // Traces and metrics when the app has @opentelemetry/api (a no-op without an SDK registered).
    void loadOpenTelemetry().then((api) => {
      if (api === undefined) return;
      telemetry.attach(api, responderCounters(this.stats), responderGauges(this.work, () => this.connectionStatus === 'connected'));
    });
  }

  /** Random per responder: tells this process from an earlier one with the same `instanceId`. */
  get incarnation(): string {
    return this.presence.incarnation;
  }

  /** This instance's id, as callers see it in replies and pass it in `to`. */
  get instanceId(): string {
    return this.options.instanceId;
  }

  get state(): ResponderState {
    return this.lifeCycle;
  }

  /** Whether `listen()` was called (its connection exists, maybe not connected yet). */
  get isStarted(): boolean {
    return this.bus !== undefined;
  }

  /** The connection's state now: `connected` means both connections are up and every subscription is confirmed. */
  get connectionStatus(): BusStatus {
    return this.bus?.status ?? 'disconnected';
  }

  /** How many requests and events this instance is handling right now. */
  get activeRequests(): number {
    return this.work.size;
  }

  /**
   * Answers requests for `pattern` (a string, or a JSON object pattern) with `handler`; call before
   * `listen()`. A string pattern may be a topic wildcard (`order.*`, `order.>`: see the README,
   * "Topics"); a malformed one throws `TopicPatternError`. When several of this instance's patterns
   * match a request's topic, the most specific one's handler answers it, once.
   */
  handle(pattern: unknown, handler: ResponderHandler<C>): this {
    this.routes.handle(pattern, handler, this.registering);
    return this;
  }

  /**
   * Runs `handler` for every event broadcast on `pattern`; call before `listen()`. A string pattern
   * may be a topic wildcard; every handler whose pattern matches an event's topic runs once for it.
   */
  onEvent(pattern: unknown, handler: ResponderHandler<C>): this {
    this.routes.onEvent(pattern, handler, this.registering);
    return this;
  }

  /** Handlers may be registered until `listen()`: its subscriptions are made once. */
  private get registering(): boolean {
    return this.lifeCycle === 'starting' && this.bus === undefined;
  }

  /** Listens to the bus's events (`status`, `error`, `subscriberLost`, `message`); before `listen()` too. */
  on<K extends keyof BusEvents>(event: K, listener: (...args: BusEvents[K]) => void): this {
    if (this.bus !== undefined) this.bus.on(event, listener as never);
    else this.pendingListeners.push([event, listener as never]);
    return this;
  }

  /** The underlying ioredis clients (see `RedisBus.unwrap`); throws before `listen()`. */
  unwrap<T>(): T {
    if (this.bus === undefined) throw new Error('Not initialized: call listen() before unwrap().');
    return this.bus.unwrap() as T;
  }

  /**
   * Connects, checks that the Redis user may run what an instance needs (`RedisPermissionError`),
   * refuses to run beside another live process with the same `instanceId` (`DuplicateInstanceError`),
   * subscribes, and announces this instance to callers.
   */
  async listen(): Promise<void> {
    if (this.bus !== undefined) throw new Error('listen() was already called.');
    this.startedAt = Date.now();
    const bus = new GuardedBus(this.pendingBus ?? createBus(this.options, `rb:${this.options.instanceId}`), this.options, (reason, channel, length) => this.refusals.inboundRejected(reason, channel, length));
    this.bus = bus;
    const coalescer = (this.coalescer = new Coalescer((channel, message) => bus.publish(channel, message), this.options, laterTurn(this.clock)));
    this.presence.attach(coalescer);
    this.refusals.attach(coalescer);
    this.invoker.attach(coalescer);
    for (const [event, listener] of this.pendingListeners.splice(0)) bus.on(event, listener as never);
    bus.on('status', (status) => this.onStatus(status));
    bus.on('message', (channel, message) => this.onMessage(channel, message));
    if (bus.listenerCount('error') === 0) bus.on('error', (error) => this.redisErrors.warn(`Redis: ${error.message}`));
    let connected = false;
    try {
      await bus.connect();
      connected = true;
      // Before subscribing anything: an instance that could not answer must not be counted as a receiver.
      await bus.checkPermissions(this.channels.probe(), INSTANCE_NEEDS, this.options.namespace);
      await this.presence.ensureUniqueId(bus, 0, []);
      this.workChannels = [this.channels.who(), ...this.routes.workChannels()];
      // Subscribed before announcing: an instance callers know of can always be reached.
      this.early.open();
      await bus.subscribe([this.directChannel, ...this.workChannels]);
      // Two processes that passed the first check at the same moment both see 2 here, and both stop.
      await this.presence.ensureUniqueId(bus, 1, [this.directChannel, ...this.workChannels]);
      this.lifeCycle = 'listening';
      // What arrived while it was starting, in arrival order.
      for (const [channel, message] of this.early.release()) this.onMessage(channel, message);
      await this.presence.noticeTakeover();
      await this.presence.announce();
      this.presence.watch(() => this.bus?.status === 'connected', bus.ping);
      this.presence.beatWhileBusy(() => this.work.oldestStart());
      this.logger.log(`Instance "${this.instanceId}" listening on ${this.workChannels.length + 1} channels in namespace "${this.options.namespace}".`);
    } catch (error) {
      // Whatever failed once connected, before it listens, nothing is left running: a subscription
      // kept (and made again on every reconnect) would be counted by Redis for every request on its
      // patterns, with nobody to answer, and would hold its id against the next start. A connect()
      // that timed out has stopped its own attempts (the status says `disconnected`); one that
      // cannot succeed (`endsStartUp`) is closed too. Requests held while it started get a refusal.
      if (this.lifeCycle !== 'listening' && (connected || endsStartUp(error))) {
        this.refuseEarly((error as Error).message);
        this.lifeCycle = 'closed';
        this.coalescer.flush();
        await bus.close().catch(() => undefined);
      }
      throw error;
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
   *
   * `alongside` (work that ends beside the drain, such as a durable consumer's) is awaited before
   * the connection closes.
   */
  async close(alongside?: Promise<unknown>): Promise<void> {
    if (this.lifeCycle === 'draining' || this.lifeCycle === 'closed') return;
    const bus = this.bus;
    this.lifeCycle = bus === undefined ? 'closed' : 'draining';
    this.presence.stopWatching();
    if (bus === undefined) return void (await alongside);
    // With Redis away there is nothing to unsubscribe from (the server dropped the connection), and
    // ioredis would queue the command until it is back: never wait for it. The `who` channel stays:
    // a caller that asks meanwhile learns it is draining, and does not take it for gone while it
    // still answers what it received.
    const who = this.channels.who();
    if (bus.status === 'connected') {
      await within(bus.unsubscribe(this.workChannels.filter((channel) => channel !== who)), this.options.shutdownTimeout, this.clock);
      // Callers that know it stop counting it for new requests at once.
      if (this.everConnected && this.workChannels.length > 0) await within(this.presence.announce(true), 1000, this.clock);
    }
    await this.work.idle(this.clock.now() + this.options.shutdownTimeout, this.clock);
    this.stopping = true;
    this.work.runQueued();
    if (this.work.size > 0) {
      this.logger.warn(`Stopping ${this.work.size} handlers still running after shutdownTimeout (${this.options.shutdownTimeout} ms); their callers get BUFFER_SHUTTING_DOWN.`);
      this.work.stopRunning((work) => {
        if (work instanceof ReplyWriter) {
          work.error({ code: BufferErrorCode.ShuttingDown, message: `Instance "${this.instanceId}" shut down before its handler finished (shutdownTimeout ${this.options.shutdownTimeout} ms).` });
        }
      });
    }
    if (bus.status === 'connected') {
      await within(this.presence.bye(), 1000, this.clock);
      await within(bus.unsubscribe([this.directChannel, who]), 1000, this.clock);
    }
    this.presence.stopBeating();
    // Replies still waiting for a connection that is not back are lost now.
    this.resend.close();
    this.coalescer?.flush();
    // Let the last PUBLISH commands reach the socket before QUIT.
    await new Promise<void>((resolve) => laterTurn(this.clock)(resolve));
    this.lifeCycle = 'closed';
    await alongside;
    await bus.close();
  }

  private onStatus(status: BusStatus): void {
    if (status === 'connected') {
      this.resend.reconnected();
      if (this.everConnected) {
        this.stats.reconnects++;
        // Callers may have dropped this instance from their view while the connection was away.
        if (this.lifeCycle === 'listening') void this.presence.announce();
      }
      this.everConnected = true;
    }
    if (status === 'reconnecting') this.logger.warn('Redis connection lost; reconnecting (subscriptions are restored automatically).');
    else if (status === 'connected' && this.lifeCycle === 'listening' && this.stats.reconnects > 0) this.logger.log('Connected to Redis; subscriptions confirmed.');
  }

  private onMessage(channel: string, message: string): void {
    if (this.lifeCycle === 'closed') return;
    if (channel === this.presence.claim.inbox) return this.presence.claim.deliver(message);
    if (this.lifeCycle === 'starting') {
      // Subscribed, not yet sure it is the only process with its id: held (bounded like the queue).
      if (!this.early.hold(channel, message)) this.refusals.rejectInput(`Dropped a message on "${channel}" that arrived while instance "${this.instanceId}" was starting (${this.options.maxQueuedHandlers} held).`);
      return;
    }
    const { envelopes, rejected } = decodeMessage(message, channel);
    // The envelopes of one Redis message arrived together: one clock read for all of them.
    const receivedAt = this.clock.now();
    for (const { error, refusable } of rejected) {
      if (refusable !== undefined && this.isRequestChannel(channel)) this.refusals.unreadable(refusable, error.message);
      else this.refusals.rejectInput(error.message);
    }
    for (const envelope of envelopes) {
      // Whatever happens below (a handler throwing synchronously included) must not reach the
      // Redis client's socket handler: it becomes that request's error reply, or a log line.
      try {
        this.dispatch(channel, envelope, receivedAt);
      } catch (error) {
        this.logger.error(`Could not handle a "${envelope.kind}" on "${channel}": ${(error as Error)?.stack ?? String(error)}`);
        if (envelope.kind === 'request' && this.refusals.replyAllowed(envelope.replyTo)) this.refusals.writerFor(envelope).error(error);
      }
    }
  }

  private dispatch(channel: string, envelope: Envelope, receivedAt: number): void {
    switch (envelope.kind) {
      case 'request':
        return this.admission.arrived(channel, envelope, receivedAt);
      case 'event':
        return this.onEventArrived(channel, envelope);
      case 'ping':
        if (channel !== this.directChannel) break;
        this.stats.pings++;
        if (this.refusals.mayAnswer(envelope)) this.presence.answerPing(envelope.replyTo, envelope.id, envelope.share === true);
        return;
      case 'hello':
        // Another process with this id took over while this one did not answer (see `IdClaim`).
        if (channel !== this.directChannel || envelope.from !== this.instanceId) break;
        if (envelope.inc !== this.incarnation && envelope.at !== undefined && envelope.at > this.startedAt) this.replaced(envelope.inc);
        return;
      case 'who':
        if (channel !== this.channels.who()) break;
        if (this.lifeCycle !== 'listening' && this.lifeCycle !== 'draining') return;
        if (this.refusals.mayAnswer(envelope)) this.presence.answerWho(envelope.replyTo, envelope.id, this.lifeCycle === 'draining');
        return;
      default:
        break;
    }
    this.refusals.rejectInput(`Dropped a "${envelope.kind}" envelope on "${channel}": it does not belong there.`);
  }

  /**
   * Another process took this id over while this one did not answer pings (frozen, cut off): callers
   * count that one now. This one stops answering at once, leaves every channel and disconnects,
   * without a `bye` (the id is not leaving).
   */
  private replaced(by: string): void {
    if (this.lifeCycle === 'closed') return;
    this.logger.error(
      `Instance "${this.instanceId}" was taken over by another process with the same instanceId (incarnation ${by}) while this one did not answer pings; it stops answering and disconnects. Give each process its own instanceId if both should run.`,
    );
    this.lifeCycle = 'closed';
    this.stopping = true;
    this.presence.stopWatching();
    this.presence.stopBeating();
    this.resend.close();
    const bus = this.bus!;
    void within(bus.unsubscribe([this.directChannel, ...this.workChannels]), 1000, this.clock)
      .catch(() => undefined)
      .then(() => bus.close())
      .catch(() => undefined);
  }

  /** It will not start (a duplicate, a refused permission…): every request it held is refused, not left unanswered. */
  private refuseEarly(reason: string): void {
    for (const [channel, message] of this.early.release()) {
      if (this.isRequestChannel(channel)) this.refusals.refuseUnstarted(decodeMessage(message, channel).envelopes, `Instance "${this.instanceId}" did not start: ${reason}`);
    }
  }

  private isRequestChannel(channel: string): boolean {
    return channel === this.directChannel || channel.startsWith(`${this.options.namespace}:req:`);
  }

  private onEventArrived(channel: string, envelope: EventEnvelope): void {
    const handlers = this.routes.eventHandlers(channel, envelope);
    if (handlers === false) return;
    if (!this.work.limiter.submit(() => this.startEvent(envelope, channel, handlers))) {
      this.stats.overloaded++;
      this.badInput.warn(`Dropped event "${envelope.pattern}": ${this.options.maxConcurrentHandlers} handlers running and ${this.options.maxQueuedHandlers} queued.`);
    }
  }

  private startEvent(envelope: EventEnvelope, channel: string, handlers: Array<EventRoute<C>> | undefined): void {
    this.stats.events++;
    if (this.stopping) return;
    if (envelope.deadline !== undefined && this.clock.now() > envelope.deadline) {
      // Also what stops a captured signed event from being replayed later.
      this.stats.expired++;
      this.badInput.warn(`Dropped event "${envelope.pattern}" received past its deadline (see "eventTtl").`);
      return;
    }
    if (handlers !== undefined) {
      for (const route of handlers) this.invoker.event(route, envelope, channel);
      return;
    }
    const route = this.routes.event(envelope.pattern);
    if (route === undefined) return this.refusals.rejectInput(`No event handler for "${envelope.pattern}".`);
    this.invoker.event(route, envelope, channel);
  }
}
