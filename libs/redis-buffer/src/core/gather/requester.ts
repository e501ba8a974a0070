import { randomBytes } from 'node:crypto';
import { BufferChannels } from '../wire/channels.js';
import { laterTurn, systemClock, TimerPool, type Clock, type TimerHandle } from '../clock.js';
import { Coalescer } from '../bus/coalescer.js';
import { type BufferHeaders, type Envelope, type PingEnvelope, type RequestEnvelope } from '../wire/envelope.js';
import { readMessage, type MessageReader } from '../wire/decode.js';
import { encodeEnvelope } from '../wire/encode.js';
import { OutboundEncoder } from './outbound-encoder.js';
import { EventPublisher } from './event-publisher.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { CALLER_NEEDS } from '../bus/permission-check.js';
import { TooManyRequestsError } from '../errors/too-many-requests.error.js';
import type { Gatherer } from './gatherer.js';
import type { AcceptOutcome, GatherSink } from './gather-sink.js';
import { InFlightRequests } from './in-flight.js';
import { RequestGatherer, type OutgoingRequest, type RequestHandle, type RequestOwner } from './request-gatherer.js';

export type { RequestHandle } from './request-gatherer.js';
import { BoundedLog, type BufferLogger } from '../logger.js';
import { MembershipView, type InstanceInfo } from '../membership/membership.js';
import { WhoRounds } from '../membership/who-rounds.js';
import { emptyRequesterStats, requesterCounters, type RequesterStats } from './requester-stats.js';

export type { RequesterStats } from './requester-stats.js';
import { PublishWatch } from './publish-watch.js';
import type { ResolvedBufferOptions, ResolvedCallOptions } from '../options.js';
import type { BusStatus, RedisBus } from '../bus/redis-bus.js';
import type { GatherResult, MissingReason } from './reply.js';
import { BufferTelemetry, type ObservedCounters, type RequestTrace } from '../telemetry/telemetry.js';

/**
 * Requests a batch holds before it goes out early, when none of this caller's PUBLISHes awaits
 * Redis's answer (see `Coalescer`): the instances start on them while the caller is still sending
 * the rest. Replies are not cut early: measured, it cost more than it gained once several
 * instances answer, each part being one more PUBLISH per instance (bench/NOTES.md).
 */
const EARLY_REQUEST_BATCH = 32;

/**
 * The caller's side of the protocol, without Nest: one inbox subscription for all replies (routed
 * by request id through `pending`, an `InFlightRequests`), per-tick coalescing of requests per
 * channel, one `Gatherer` per request, and the membership view that tells each request whom it
 * waits for.
 */
export class Requester {
  readonly channels: BufferChannels;
  readonly inbox: string;
  readonly stats: RequesterStats = emptyRequesterStats();
  private readonly coalescer: Coalescer;
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private readonly pending = new InFlightRequests<Gatherer<unknown>, RequestTrace>(this.idPrefix);
  private readonly encoder: OutboundEncoder;
  private readonly events: EventPublisher;
  private readonly view: MembershipView;
  // Every request's timeout: one underlying timer per distinct duration.
  private readonly timers: TimerPool;
  private readonly owner: RequestOwner;
  private nextId = 0;
  private started: Promise<void> | undefined;
  private firstRound: Promise<void> = Promise.resolve();
  private readonly rounds: WhoRounds;
  private livenessTimer: TimerHandle | undefined;
  private livenessDueAt = 0;
  private readonly watch: PublishWatch;
  // A `who` sent before the inbox is subscribed would have its hellos lost: the first connection
  // reports "connected" before start() has subscribed the inbox.
  private inboxSubscribed = false;
  private closed = false;
  private readonly badInput: BoundedLog;

  constructor(
    private readonly bus: RedisBus,
    private readonly options: ResolvedBufferOptions,
    logger: BufferLogger,
    private readonly clock: Clock = systemClock,
    readonly telemetry: BufferTelemetry = new BufferTelemetry('client', options.namespace, options.instanceId),
  ) {
    this.channels = new BufferChannels(options.namespace);
    this.inbox = this.channels.inbox(`${options.instanceId}.${this.idPrefix}`);
    this.encoder = new OutboundEncoder(options.maxPayloadBytes, options.instanceId, this.inbox);
    this.timers = new TimerPool(clock);
    this.watch = new PublishWatch(clock);
    const limits = { maxBatchBytes: options.maxBatchBytes, maxBatchCount: options.maxBatchCount, earlyBatchCount: EARLY_REQUEST_BATCH };
    this.coalescer = new Coalescer((channel, message) => this.watch.track(bus.publish(channel, message)), limits, laterTurn(clock));
    this.badInput = new BoundedLog(logger);
    this.view = new MembershipView(
      {
        ping: (instanceId) => this.ping(instanceId),
        instanceGone: (instanceId, reason, sentBefore) => this.instanceGone(instanceId, reason, sentBefore),
        instanceDismissed: (instanceId) => {
          for (const gatherer of this.pending.values()) gatherer.instanceDismissed(instanceId);
        },
      },
      options.livenessTimeout,
      clock,
    );
    this.rounds = new WhoRounds({
      view: this.view,
      clock,
      livenessTimeout: options.livenessTimeout,
      from: options.instanceId,
      inbox: this.inbox,
      whoChannel: this.channels.who(),
      nextId: () => this.newId(),
      publish: (channel, encoded) => this.coalescer.publish(channel, encoded),
      canAsk: () => this.canAsk(),
      // Requests published before the view was usable: whoever answered this `who` (published
      // first, on the same connection) had subscribed before them.
      roundEnded: () => {
        for (const gatherer of this.pending.values()) {
          const awaited = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to, gatherer.topicRoutes);
          gatherer.adoptAwaited(awaited, this.view.silentAmong(awaited));
        }
      },
    });
    const view = this.view;
    const watch = this.watch;
    const unansweredAfter = options.livenessTimeout / 4;
    this.events = new EventPublisher({
      channels: this.channels,
      encoder: this.encoder,
      publish: (channel, encoded) => this.coalescer.publish(channel, encoded),
      view: this.view,
      telemetry,
      stats: this.stats,
      instanceId: options.instanceId,
      eventTtl: options.eventTtl,
      newId: () => this.newId(),
    });
    this.owner = {
      pending: this.pending,
      telemetry,
      unpublished: new Set(),
      isDraining: (instanceId) => view.isDraining(instanceId),
      isUnvouched: (instanceId) => view.isUnvouched(instanceId),
      redisUnanswering: () => watch.unansweredFor() >= unansweredAfter,
      servingNow: (pattern, to, routes) => view.servingNow(pattern, to, routes),
      confirmMembers: () => {
        if (!this.canAsk()) return false;
        void this.rounds.ask().catch(() => undefined);
        return true;
      },
    };
    const members = this.channels.members();
    bus.on('message', (channel, message) => {
      if (channel === this.inbox || channel === members) readMessage(message, channel, this.reader);
    });
    bus.on('status', (status) => this.onStatus(status));
    // Replies published while the inbox is disconnected are lost for good (pub/sub is at-most-once),
    // so waiting would only turn a known failure into a timeout. A blip of the publisher alone
    // loses nothing already sent: those requests keep waiting.
    bus.on('subscriberLost', () => {
      this.view.markUnsynced();
      this.failAll('Redis connection lost (the reply subscription)');
    });
  }

  /** Connects, subscribes the inbox and the members channel, and learns who is there. */
  start(): Promise<void> {
    // start() (connect()) resolves once the caller knows who is there: one `who` round, at most
    // half of livenessTimeout.
    return this.subscribeInbox().then(() => this.firstRound);
  }

  /**
   * Connects and subscribes the inbox and the members channel; concurrent calls share one attempt.
   * Requests wait for this only: until the first `who` round ends they rely on Redis's count.
   */
  private subscribeInbox(): Promise<void> {
    if (this.closed) return Promise.reject(new ConnectionLostError('the client was closed'));
    this.started ??= this.bus
      .connect()
      // Before subscribing: a caller that could not publish its requests must not look connected.
      .then(() => this.bus.checkPermissions(this.channels.probe(), CALLER_NEEDS, this.options.namespace))
      .then(() => this.bus.subscribe([this.inbox, this.channels.members()]))
      .then(() => {
        this.inboxSubscribed = true;
        this.firstRound = this.rounds.ask().then(
          () => undefined,
          () => undefined,
        );
      })
      .catch((error: unknown) => {
        this.started = undefined;
        throw error;
      });
    return this.started;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** The live instances of the namespace, asked afresh (`who`), with the patterns each answers. */
  async instances(): Promise<InstanceInfo[]> {
    await this.subscribeInbox();
    return this.rounds.ask();
  }

  /**
   * Sends one request. Errors found before publishing (too large, too many in flight, an envelope
   * the receivers would refuse) are thrown; everything after reaches `sink`. Returns a function
   * that cancels the request at once.
   */
  request<T>(pattern: string, data: unknown, call: ResolvedCallOptions<T>, sink: GatherSink<T>): RequestHandle {
    if (this.closed) throw new ConnectionLostError('the client was closed');
    if (this.pending.size >= this.options.maxInFlight) throw new TooManyRequestsError(this.options.maxInFlight);
    const id = this.pending.nextId();
    const channel = call.to === undefined ? this.channels.request(pattern) : this.channels.direct(call.to);
    const traced = this.telemetry.startRequest('request', pattern, channel, id, call.headers);
    // One object with prototype methods rather than closures: it lives as long as the request.
    const gatherer = new RequestGatherer<T>(this.owner, id, pattern, call, sink, this.timers);
    this.pending.add(gatherer as Gatherer<unknown>, traced?.trace);
    // A topic: also to the channel of every wildcard binding the view knows that matches it (none
    // known: an exact request, at the cost of one length check).
    if (call.to === undefined) gatherer.routeVia(this.view.requestBindings.routesFor(pattern));
    let item: OutgoingRequest;
    try {
      const headers = traced?.headers ?? call.headers;
      const envelope: RequestEnvelope = { ttl: call.timeout, v: 1, kind: 'request', id, pattern, from: this.options.instanceId, replyTo: this.inbox, headers, data: data === undefined ? null : data };
      item = this.encoder.request(envelope, this.view, gatherer as Gatherer<unknown>);
    } catch (error) {
      gatherer.cancel();
      throw error;
    }
    this.stats.requests++;
    this.armLiveness();
    if (this.bus.status === 'connected' && this.inboxSubscribed) {
      this.enqueueRequest(channel, item, gatherer);
    } else if (this.bus.status === 'reconnecting' || this.bus.status === 'closed') {
      // Waiting for a reconnect would make the request hang on ioredis's retry timers.
      gatherer.fail(new ConnectionLostError(`Redis connection is ${this.bus.status}`));
    } else {
      // First connection: wait for it, bounded by the request's own timeout.
      this.enqueueWhenConnected(channel, item, gatherer);
    }
    return gatherer;
  }

  /**
   * Hands a request to the coalescer. The coalescer holds it until the batch's PUBLISH has
   * answered; nothing that lives as long as the request holds it (memory per request in flight).
   */
  private enqueueRequest<T>(channel: string, item: OutgoingRequest, gatherer: RequestGatherer<T>): void {
    gatherer.markPublished();
    if (gatherer.isEnded) return;
    this.coalescer.enqueue(channel, item);
    // The same request (same id) on each route's channel: see `OutgoingRequest`.
    for (const route of gatherer.topicRoutes) this.coalescer.enqueue(this.channels.request(route), item);
  }

  private enqueueWhenConnected<T>(channel: string, item: OutgoingRequest, gatherer: RequestGatherer<T>): void {
    gatherer.markUnpublished();
    this.subscribeInbox().then(
      () => this.enqueueRequest(channel, item, gatherer),
      (error: Error) => gatherer.fail(error),
    );
  }

  /**
   * Broadcasts an event to every instance handling `pattern`, exactly or by a wildcard binding this
   * caller knows of; resolves with Redis's receiver count, in instances (see `EventPublisher`).
   */
  async emit(pattern: string, data: unknown, headers: BufferHeaders = {}): Promise<number> {
    await this.subscribeInbox();
    return this.events.publish(pattern, data, headers);
  }

  /** What this side reports as OpenTelemetry metrics, read at each collection. */
  observedCounters(): { counters: ObservedCounters; gauges: ObservedCounters } {
    return {
      counters: requesterCounters(this.stats),
      gauges: {
        inFlight: { name: 'nestjs_redis_buffer.requests.in_flight', description: 'Requests open now.', read: () => this.pending.size },
        live: { name: 'nestjs_redis_buffer.instances.live', description: 'Instances this caller knows to be live.', read: () => this.view.list().length },
        connected: { name: 'nestjs_redis_buffer.connection.up', description: 'Whether the connection to Redis is up with the inbox subscription confirmed (1) or not (0).', read: () => (this.bus.status === 'connected' && this.inboxSubscribed ? 1 : 0) },
      },
    };
  }

  /** The instances this caller's view holds now (no round trip; `instances()` asks afresh). */
  knownInstances(): InstanceInfo[] {
    return this.view.list();
  }

  /** Fails every pending request with `ConnectionLostError` and closes nothing else. */
  failAll(reason: string): void {
    for (const gatherer of this.pending.values()) {
      gatherer.fail(new ConnectionLostError(reason, { replies: gatherer.allReplies() }));
    }
    this.pending.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.livenessTimer !== undefined) this.clock.clearTimer(this.livenessTimer);
    this.livenessTimer = undefined;
    this.rounds.close();
    // Fail first: requests still waiting in the coalescer are then cancelled, not published.
    this.failAll('the client was closed');
    this.coalescer.flush();
  }

  /** Each envelope in order; a compact reply goes to its request as fields, never an envelope object. */
  private readonly reader: MessageReader = {
    envelope: (envelope, channel) => {
      // Nothing a message holds, nor any callback it reaches, may throw into the Redis client.
      try {
        this.onEnvelope(channel!, envelope);
      } catch (error) {
        this.failedOn(channel!, envelope.kind, envelope.kind === 'reply' ? envelope.id : undefined, error);
      }
    },
    compactReply: (id, from, seq, done, data, channel) => {
      if (channel !== this.inbox) return this.misplaced(channel!, 'reply');
      try {
        const gatherer = this.gathererFor(id, from);
        if (gatherer !== undefined) this.counted(gatherer.acceptValue(from, seq, done, data));
      } catch (error) {
        this.failedOn(channel, 'reply', id, error);
      }
    },
    rejected: ({ error }) => {
      this.stats.malformedMessages++;
      this.badInput.warn(error.message);
    },
  };

  private failedOn(channel: string, kind: string, requestId: string | undefined, error: unknown): void {
    this.badInput.warn(`Could not process a "${kind}" envelope on "${channel}": ${(error as Error)?.message ?? String(error)}`);
    if (requestId !== undefined) this.pending.get(requestId)?.fail(error instanceof Error ? error : new Error(String(error)));
  }

  private misplaced(channel: string, kind: string): void {
    this.stats.malformedMessages++;
    this.badInput.warn(`Dropped a "${kind}" envelope on "${channel}": it does not belong there.`);
  }

  /** The request a reply answers, once its instance is heard from; the reply counts late when none waits. */
  private gathererFor(id: string, from: string): Gatherer<unknown> | undefined {
    this.view.heard(from);
    const gatherer = this.pending.get(id);
    if (gatherer === undefined) this.stats.lateReplies++;
    return gatherer;
  }

  private counted(outcome: AcceptOutcome): void {
    this.stats[outcome === 'accepted' ? 'replies' : outcome === 'duplicate' ? 'duplicateReplies' : 'lateReplies']++;
  }

  private onEnvelope(channel: string, envelope: Envelope): void {
    switch (envelope.kind) {
      case 'reply': {
        if (channel !== this.inbox) break;
        const gatherer = this.gathererFor(envelope.id, envelope.from);
        if (gatherer !== undefined) this.counted(gatherer.accept(envelope));
        return;
      }
      case 'pong':
        if (channel === this.inbox) this.view.heard(envelope.from, envelope.inc);
        // On the members channel: a shared pong, answering some caller's ping; a sign of life to all.
        else if (channel === this.channels.members()) {
          // Another incarnation: the process restarted (its hello may have been missed); a `who` round confirms it.
          if (this.view.heardShared(envelope.from, envelope.inc)) this.rounds.vouchSoon();
        }
        else break;
        return;
      case 'hello': {
        const round = channel === this.inbox ? this.rounds.round(envelope.id) : undefined;
        const outcome = this.view.hello(envelope, round !== undefined);
        if (outcome === 'replayed' || outcome === 'dropped') {
          this.stats.droppedMembership++;
          if (outcome === 'dropped') this.rounds.vouchSoon();
          return;
        }
        if (outcome === 'unvouched') this.rounds.vouchSoon();
        round?.(envelope);
        return;
      }
      case 'bye':
        if (channel !== this.channels.members()) break;
        if (!this.view.bye(envelope.from, envelope.inc, envelope.seq, envelope.at) && envelope.seq !== undefined) this.stats.droppedMembership++;
        return;
      default:
        break;
    }
    this.misplaced(channel, envelope.kind);
  }

  private ping(instanceId: string): Promise<number> {
    if (this.bus.status !== 'connected') return Promise.resolve(-1);
    this.stats.pings++;
    const ping: PingEnvelope = { v: 1, kind: 'ping', id: this.newId(), from: this.options.instanceId, replyTo: this.inbox, share: true };
    return this.coalescer.publish(this.channels.direct(instanceId), encodeEnvelope(ping)).catch(() => -1);
  }

  /** Whether a `who` round can be sent now. */
  private canAsk(): boolean {
    return !this.closed && this.inboxSubscribed && this.bus.status === 'connected';
  }

  private newId(): string {
    return `${this.idPrefix}${(this.nextId++).toString(36)}`;
  }

  private instanceGone(instanceId: string, reason: MissingReason, sentBefore?: number): void {
    if (reason === 'silent') this.stats.silentInstances++;
    this.telemetry.instanceGone(reason);
    for (const gatherer of this.pending.values()) gatherer.instanceGone(instanceId, reason, sentBefore);
  }

  /**
   * A liveness round every quarter of `livenessTimeout` while requests are open: one ping per
   * instance per round, shared by every request waiting on it.
   */
  private armLiveness(): void {
    if (this.livenessTimer !== undefined) return;
    const quarter = this.options.livenessTimeout / 4;
    this.livenessDueAt = this.clock.now() + quarter;
    this.livenessTimer = this.clock.setTimer(() => {
      this.livenessTimer = undefined;
      if (this.pending.size === 0 || this.closed) return;
      const now = this.clock.now();
      // A timer that fires late measures how long this process's own event loop was blocked.
      const lag = Math.max(0, now - this.livenessDueAt);
      if (lag > quarter / 2) this.stats.lagForgiven++;
      const waitedOn = new Set<string>();
      for (const gatherer of this.pending.values()) {
        if (now - gatherer.startedAt < quarter) continue;
        for (const id of gatherer.waitingOn()) waitedOn.add(id);
      }
      this.view.check(waitedOn, lag);
      this.armLiveness();
    }, quarter);
  }

  private onStatus(status: BusStatus): void {
    if (status === 'disconnected') {
      this.view.markUnsynced();
      this.failAll(`Redis connection ${status}`);
    } else if (status === 'connected' && this.inboxSubscribed && !this.view.isSynced && !this.closed) {
      // Back after a loss: hellos and byes may have been missed meanwhile.
      void this.rounds.ask().catch(() => undefined);
    }
  }
}

export type { GatherResult, InstanceInfo };
