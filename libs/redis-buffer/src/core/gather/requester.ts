import { randomBytes } from 'node:crypto';
import { BufferChannels } from '../wire/channels.js';
import { laterTurn, systemClock, TimerPool, type Clock, type TimerHandle } from '../clock.js';
import { Coalescer, type OutgoingEnvelope } from '../bus/coalescer.js';
import { decodeMessage, encodeEnvelope, encodeRequestRest, utf8Bytes, validateEnvelope, type BufferHeaders, type Envelope, type EventEnvelope, type HelloEnvelope, type PingEnvelope, type RequestEnvelope, type WhoEnvelope } from '../wire/envelope.js';
import { BadMessageError } from '../errors/bad-message.error.js';
import type { BufferTimeoutError } from '../errors/buffer-timeout.error.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import { PayloadTooLargeError } from '../errors/payload-too-large.error.js';
import { TooManyRequestsError } from '../errors/too-many-requests.error.js';
import { Gatherer, type GatherSink } from './gatherer.js';
import { BoundedLog, type BufferLogger } from '../logger.js';
import { MembershipView, type InstanceInfo } from '../membership/membership.js';
import { PublishWatch } from './publish-watch.js';
import type { ResolvedBufferOptions, ResolvedCallOptions } from '../options.js';
import type { BusStatus, RedisBus } from '../bus/redis-bus.js';
import type { BufferReply, GatherResult, MissingReason } from './reply.js';
import { BufferTelemetry, type ObservedCounters, type RequestTrace } from '../telemetry/telemetry.js';

/** Counters a caller can read for monitoring; they only ever grow. */
export interface RequesterStats {
  requests: number;
  events: number;
  /** Replies accepted (values, errors, refusals, and the closing envelopes of streams). */
  replies: number;
  /** Replies for a request that had already completed, been cancelled, or was never ours. */
  lateReplies: number;
  duplicateReplies: number;
  malformedMessages: number;
  /** With `signingKey`: replies dropped because they were unsigned or their signature was wrong. */
  forgedMessages: number;
  /** Pings sent to instances a request had waited on (see `livenessTimeout`). */
  pings: number;
  /** Times an instance was found silent (no answer to a ping within `livenessTimeout`). */
  silentInstances: number;
  /** Membership messages (`hello`, `bye`) dropped as replays, or hellos dropped because the table of unvouched members was full. */
  droppedMembership: number;
  /** Liveness rounds whose timer fired late because this process's event loop was blocked: that time was not held against instances. */
  lagForgiven: number;
}

/** A request waiting in the coalescer: encoded once, with its `ttl` written in when it is flushed. */
class OutgoingRequest implements OutgoingEnvelope {
  // Whom the view knew serves the pattern when the request went out (see `Gatherer.sent`).
  private known: ReadonlySet<string> | undefined;
  private removalMark = 0;

  constructor(
    private readonly view: MembershipView,
    private readonly gatherer: Gatherer<unknown>,
    /** The encoded request after its `ttl`, from the comma on. */
    private readonly rest: string,
    readonly bytes: number,
  ) {}

  get cancelled(): boolean {
    return this.gatherer.isEnded;
  }

  encode(): string {
    const gatherer = this.gatherer;
    // An instance the view knows now said hello after subscribing: Redis must count it.
    this.known = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to);
    this.removalMark = this.view.removalMark;
    gatherer.sent(this.known, this.view.sendMark);
    return `{"ttl":${gatherer.remainingMs()}${this.rest}`;
  }

  /** Redis's count of receivers: whom the request waits for. */
  published(error: Error | undefined, receivers: number): void {
    const gatherer = this.gatherer;
    if (error !== undefined) return gatherer.fail(error);
    // Known when it was sent and still a member now: one that said hello since may have subscribed
    // after the PUBLISH (not a receiver); one that left since answered first (a bye follows its
    // replies); one that started draining since still answers what it received.
    let awaited = this.known === undefined ? this.view.awaitedFor(gatherer.pattern, gatherer.rules.to) : this.view.stillMembers(this.known, this.removalMark);
    // Those that said hello meanwhile may be receivers too: an instance announces itself after
    // subscribing, and its hello and this PUBLISH race on two connections.
    let newcomers: Set<string> | undefined;
    if (this.known !== undefined && awaited !== undefined) {
      const now = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to);
      if (now !== undefined && now !== this.known) {
        for (const id of now) if (!awaited.has(id)) (newcomers ??= new Set()).add(id);
        if (newcomers !== undefined) awaited = new Set([...awaited, ...newcomers]);
      }
    }
    const silent = this.view.silentAmong(awaited);
    // A silent instance is pinged again when a request skips it, so it can come back on its pong.
    if (silent.length > 0) this.view.repingSilent(silent);
    gatherer.countedAt(this.view.sendMark);
    gatherer.expect(receivers, awaited, silent, newcomers);
  }
}

/** What `Requester.request` returns: cancels the request at once (also as an rxjs teardown). */
export interface RequestHandle {
  cancel(): void;
  unsubscribe(): void;
}

/**
 * The caller's side of the protocol, without Nest: one inbox subscription for all replies (routed
 * by request id through `pending`), per-tick coalescing of requests per channel, one `Gatherer`
 * per request, and the membership view that tells each request whom it waits for.
 */
export class Requester {
  readonly channels: BufferChannels;
  readonly inbox: string;
  readonly stats: RequesterStats = { requests: 0, events: 0, replies: 0, lateReplies: 0, duplicateReplies: 0, malformedMessages: 0, forgedMessages: 0, pings: 0, silentInstances: 0, droppedMembership: 0, lagForgiven: 0 };
  private readonly pending = new Map<string, Gatherer<unknown>>();
  private readonly coalescer: Coalescer;
  private readonly idPrefix = randomBytes(6).toString('base64url');
  private readonly fromJson: string;
  private readonly inboxJson: string;
  private readonly view: MembershipView;
  // Every request's timeout: one underlying timer per distinct duration.
  private readonly timers: TimerPool;
  private readonly owner: RequestOwner;
  private nextId = 0;
  private started: Promise<void> | undefined;
  private firstRound: Promise<void> = Promise.resolve();
  private syncing: Promise<InstanceInfo[]> | undefined;
  private readonly whoRounds = new Map<string, (hello: HelloEnvelope) => void>();
  private livenessTimer: TimerHandle | undefined;
  private livenessDueAt = 0;
  // A `who` round asked for by unsolicited hellos (to vouch for newcomers), at most one per window.
  private vouchTimer: TimerHandle | undefined;
  private lastRoundAt = Number.NEGATIVE_INFINITY;
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
    this.fromJson = JSON.stringify(options.instanceId);
    this.inboxJson = JSON.stringify(this.inbox);
    this.timers = new TimerPool(clock);
    this.watch = new PublishWatch(clock);
    this.coalescer = new Coalescer((channel, message) => this.watch.track(bus.publish(channel, message)), options, laterTurn(clock));
    this.badInput = new BoundedLog(logger);
    this.view = new MembershipView(
      {
        ping: (instanceId) => this.ping(instanceId),
        instanceGone: (instanceId, reason, sentBefore) => this.instanceGone(instanceId, reason, sentBefore),
        instanceDismissed: (instanceId) => {
          for (const gatherer of [...this.pending.values()]) gatherer.instanceDismissed(instanceId);
        },
      },
      options.livenessTimeout,
      clock,
    );
    const view = this.view;
    const watch = this.watch;
    const unansweredAfter = options.livenessTimeout / 4;
    this.owner = {
      pending: this.pending,
      telemetry,
      unpublished: new Set(),
      traces: new Map(),
      isDraining: (instanceId) => view.isDraining(instanceId),
      isUnvouched: (instanceId) => view.isUnvouched(instanceId),
      redisUnanswering: () => watch.unansweredFor() >= unansweredAfter,
      servingNow: (pattern, to) => view.servingNow(pattern, to),
      confirmMembers: () => {
        if (this.closed || !this.inboxSubscribed || this.bus.status !== 'connected') return false;
        void this.sync().catch(() => undefined);
        return true;
      },
    };
    const members = this.channels.members();
    bus.on('message', (channel, message) => {
      if (channel === this.inbox || channel === members) this.onMessage(channel, message);
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
      .then(() => this.bus.subscribe([this.inbox, this.channels.members()]))
      .then(() => {
        this.inboxSubscribed = true;
        this.firstRound = this.sync().then(
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
    return this.sync();
  }

  /**
   * Sends one request. Errors found before publishing (too large, too many in flight, an envelope
   * the receivers would refuse) are thrown; everything after reaches `sink`. Returns a function
   * that cancels the request at once.
   */
  request<T>(pattern: string, data: unknown, call: ResolvedCallOptions<T>, sink: GatherSink<T>): RequestHandle {
    if (this.closed) throw new ConnectionLostError('the client was closed');
    if (this.pending.size >= this.options.maxInFlight) throw new TooManyRequestsError(this.options.maxInFlight);
    const id = `${this.idPrefix}${(this.nextId++).toString(36)}`;
    const channel = call.to === undefined ? this.channels.request(pattern) : this.channels.direct(call.to);
    const traced = this.telemetry.startRequest('request', pattern, channel, id, call.headers);
    // One object with prototype methods rather than closures: it lives as long as the request.
    const gatherer = new RequestGatherer<T>(this.owner, id, pattern, call, sink, this.timers, traced?.trace);
    let item: OutgoingRequest;
    try {
      const headers = traced?.headers ?? call.headers;
      item = this.prepareRequest(gatherer as Gatherer<unknown>, { ttl: call.timeout, v: 1, kind: 'request', id, pattern, from: this.options.instanceId, replyTo: this.inbox, headers, data: data === undefined ? null : data });
    } catch (error) {
      gatherer.cancel();
      throw error;
    }
    this.pending.set(id, gatherer as Gatherer<unknown>);
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
  }

  private enqueueWhenConnected<T>(channel: string, item: OutgoingRequest, gatherer: RequestGatherer<T>): void {
    gatherer.markUnpublished();
    this.subscribeInbox().then(
      () => this.enqueueRequest(channel, item, gatherer),
      (error: Error) => gatherer.fail(error),
    );
  }

  /** Broadcasts an event to every instance handling `pattern`; resolves with Redis's receiver count. */
  async emit(pattern: string, data: unknown, headers: BufferHeaders = {}): Promise<number> {
    await this.subscribeInbox();
    const id = `${this.idPrefix}${(this.nextId++).toString(36)}`;
    const channel = this.channels.event(pattern);
    const traced = this.telemetry.startRequest('event', pattern, channel, id, headers);
    const envelope: EventEnvelope = {
      v: 1,
      kind: 'event',
      id,
      pattern,
      from: this.options.instanceId,
      deadline: Date.now() + this.options.eventTtl,
      headers: traced?.headers ?? headers,
      data: data === undefined ? null : data,
    };
    let encoded: string;
    try {
      encoded = this.encodeChecked(envelope, 'event');
    } catch (error) {
      this.telemetry.endSend(traced?.trace, {}, error as Error);
      throw error;
    }
    this.stats.events++;
    const sent = this.coalescer.publish(channel, encoded);
    sent.then(
      (receivers) => this.telemetry.endSend(traced?.trace, { 'nestjs_redis_buffer.receivers': receivers }, undefined),
      (error: Error) => this.telemetry.endSend(traced?.trace, { 'nestjs_redis_buffer.receivers': 0 }, error),
    );
    return sent;
  }

  /** What this side reports as OpenTelemetry metrics, read at each collection. */
  observedCounters(): { counters: ObservedCounters; gauges: ObservedCounters } {
    const stats = this.stats;
    return {
      counters: {
        sent: { name: 'messaging.client.sent.messages', description: 'Requests and events sent.', read: () => stats.requests + stats.events },
        consumed: { name: 'messaging.client.consumed.messages', description: 'Replies received and accepted.', read: () => stats.replies },
        duplicate: { name: 'nestjs_redis_buffer.replies.duplicate', description: 'Replies dropped as duplicates (same instance and sequence number).', read: () => stats.duplicateReplies },
        late: { name: 'nestjs_redis_buffer.replies.late', description: 'Replies that arrived after their request had ended.', read: () => stats.lateReplies },
        malformed: { name: 'nestjs_redis_buffer.messages.malformed', description: 'Malformed messages dropped.', read: () => stats.malformedMessages },
        forged: { name: 'nestjs_redis_buffer.messages.forged', description: 'Unsigned or forged messages dropped (with signingKey).', read: () => stats.forgedMessages },
        pings: { name: 'nestjs_redis_buffer.pings', description: 'Liveness pings sent to instances a request waited on.', read: () => stats.pings },
        silent: { name: 'nestjs_redis_buffer.instances.silent', description: 'Times an instance was found silent (no answer to a ping).', read: () => stats.silentInstances },
      },
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
    for (const gatherer of [...this.pending.values()]) {
      gatherer.fail(new ConnectionLostError(reason, { replies: gatherer.allReplies() }));
    }
    this.pending.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.livenessTimer !== undefined) this.clock.clearTimer(this.livenessTimer);
    this.livenessTimer = undefined;
    if (this.vouchTimer !== undefined) this.clock.clearTimer(this.vouchTimer);
    this.vouchTimer = undefined;
    // Fail first: requests still waiting in the coalescer are then cancelled, not published.
    this.failAll('the client was closed');
    this.coalescer.flush();
  }

  /** Validates with the receivers' own rules, encodes, and checks the size, before anything is sent. */
  private encodeChecked(envelope: Envelope, what: string): string {
    this.validate(envelope, what);
    return this.sizeChecked(encodeEnvelope(envelope), what);
  }

  private validate(envelope: Envelope, what: string): void {
    const problem = validateEnvelope(envelope);
    if (typeof problem === 'string') throw new BadMessageError(`the ${what} would be refused by every receiver: ${problem}`);
  }

  private sizeChecked(encoded: string, what: string): string {
    const bytes = utf8Bytes(encoded, this.options.maxPayloadBytes);
    if (bytes > this.options.maxPayloadBytes) throw new PayloadTooLargeError(bytes, this.options.maxPayloadBytes, what);
    return encoded;
  }

  private prepareRequest(gatherer: Gatherer<unknown>, envelope: RequestEnvelope): OutgoingRequest {
    this.validate(envelope, 'request');
    // `ttl` comes first in the envelope, so its text can be rewritten when the batch is flushed and
    // time spent queued is not counted twice: keep what follows it.
    const rest = encodeRequestRest(envelope, this.fromJson, this.inboxJson);
    const encoded = this.sizeChecked(`{"ttl":${envelope.ttl}${rest}`, 'request');
    return new OutgoingRequest(this.view, gatherer, rest, encoded.length);
  }

  private onMessage(channel: string, message: string): void {
    const { envelopes, rejected } = decodeMessage(message, channel);
    for (const { error } of rejected) {
      this.stats.malformedMessages++;
      this.badInput.warn(error.message);
    }
    for (const envelope of envelopes) {
      // Nothing a message holds, nor any callback it reaches, may throw into the Redis client.
      try {
        this.onEnvelope(channel, envelope);
      } catch (error) {
        this.badInput.warn(`Could not process a "${envelope.kind}" envelope on "${channel}": ${(error as Error)?.message ?? String(error)}`);
        if (envelope.kind === 'reply') this.pending.get(envelope.id)?.fail(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  private onEnvelope(channel: string, envelope: Envelope): void {
    switch (envelope.kind) {
      case 'reply': {
        if (channel !== this.inbox) break;
        this.view.heard(envelope.from);
        const gatherer = this.pending.get(envelope.id);
        if (gatherer === undefined) {
          this.stats.lateReplies++;
          return;
        }
        const outcome = gatherer.accept(envelope);
        if (outcome === 'accepted') this.stats.replies++;
        else if (outcome === 'duplicate') this.stats.duplicateReplies++;
        else if (outcome === 'late') this.stats.lateReplies++;
        return;
      }
      case 'pong':
        if (channel === this.inbox) this.view.heard(envelope.from, envelope.inc);
        // On the members channel: a shared pong, answering some caller's ping; a sign of life to all.
        else if (channel === this.channels.members()) this.view.heardShared(envelope.from, envelope.inc);
        else break;
        return;
      case 'hello': {
        const round = channel === this.inbox ? this.whoRounds.get(envelope.id) : undefined;
        const outcome = this.view.hello(envelope, round !== undefined);
        if (outcome === 'replayed' || outcome === 'dropped') {
          this.stats.droppedMembership++;
          if (outcome === 'dropped') this.vouchSoon();
          return;
        }
        if (outcome === 'unvouched') this.vouchSoon();
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
    this.stats.malformedMessages++;
    this.badInput.warn(`Dropped a "${envelope.kind}" envelope on "${channel}": it does not belong there.`);
  }

  /**
   * One `who` round: every instance answers with a `hello`; the round ends when as many have
   * answered as Redis counted on the `who` channel, or after half the liveness bound (a receiver of
   * the `who` channel that is not an instance never answers, nor does a frozen instance). Resolves
   * with the instances that answered.
   */
  private sync(): Promise<InstanceInfo[]> {
    this.syncing ??= new Promise<InstanceInfo[]>((resolve, reject) => {
      this.lastRoundAt = this.clock.now();
      const id = `${this.idPrefix}${(this.nextId++).toString(36)}`;
      const answered = new Map<string, InstanceInfo>();
      const since = this.view.roundStart();
      let expected: number | undefined;
      let timer: TimerHandle | undefined;
      const done = (): void => {
        if (timer !== undefined) this.clock.clearTimer(timer);
        this.whoRounds.delete(id);
        this.syncing = undefined;
        // Every receiver answered: whoever the view knew and did not answer is not subscribed any more.
        const unvouched = this.view.markSynced(since, expected !== undefined && answered.size >= expected ? new Set(answered.keys()) : undefined);
        // Members only heard of (an unsolicited hello) are vouched for or cleared by a later round.
        if (unvouched > 0) this.vouchSoon(this.options.livenessTimeout);
        // Requests published before the view was usable: whoever answered this `who` (published
        // first, on the same connection) had subscribed before them.
        for (const gatherer of this.pending.values()) {
          const awaited = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to);
          gatherer.adoptAwaited(awaited, this.view.silentAmong(awaited));
        }
        resolve([...answered.values()].sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0)));
      };
      this.whoRounds.set(id, (hello) => {
        answered.set(hello.from, { instanceId: hello.from, incarnation: hello.inc, patterns: [...hello.patterns], events: [...hello.events] });
        if (expected !== undefined && answered.size >= expected) done();
      });
      const who: WhoEnvelope = { v: 1, kind: 'who', id, from: this.options.instanceId, replyTo: this.inbox };
      const encoded = encodeEnvelope(who);
      this.coalescer.enqueue(this.channels.who(), { bytes: encoded.length, encode: () => encoded }, (error, receivers) => {
        if (error !== undefined) {
          this.whoRounds.delete(id);
          this.syncing = undefined;
          reject(error);
          return;
        }
        expected = receivers;
        if (answered.size >= receivers) done();
        else timer = this.clock.setTimer(done, this.options.livenessTimeout / 2);
      });
    });
    return this.syncing;
  }

  /**
   * A hello from an instance no exchange vouches for: a `who` round will vouch for it (it answers)
   * or clear it (it does not), at most one round per half `livenessTimeout` however many hellos come.
   */
  private vouchSoon(after = 0): void {
    if (this.vouchTimer !== undefined || this.closed) return;
    const window = this.options.livenessTimeout / 2;
    const wait = Math.max(after, this.lastRoundAt + window - this.clock.now());
    this.vouchTimer = this.clock.setTimer(() => {
      this.vouchTimer = undefined;
      if (this.closed || !this.inboxSubscribed || this.bus.status !== 'connected') return;
      void this.sync().catch(() => undefined);
    }, wait);
  }

  private ping(instanceId: string): Promise<number> {
    if (this.bus.status !== 'connected') return Promise.resolve(-1);
    this.stats.pings++;
    const ping: PingEnvelope = { v: 1, kind: 'ping', id: `${this.idPrefix}${(this.nextId++).toString(36)}`, from: this.options.instanceId, replyTo: this.inbox, share: true };
    const encoded = encodeEnvelope(ping);
    return new Promise((resolve) => {
      this.coalescer.enqueue(this.channels.direct(instanceId), { bytes: encoded.length, encode: () => encoded }, (error, receivers) => resolve(error === undefined ? receivers : -1));
    });
  }

  private instanceGone(instanceId: string, reason: MissingReason, sentBefore?: number): void {
    if (reason === 'silent') this.stats.silentInstances++;
    this.telemetry.instanceGone(reason);
    for (const gatherer of [...this.pending.values()]) gatherer.instanceGone(instanceId, reason, sentBefore);
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
      void this.sync().catch(() => undefined);
    }
  }
}

/** What every request of one requester shares. */
interface RequestOwner {
  readonly pending: Map<string, Gatherer<unknown>>;
  readonly telemetry: BufferTelemetry;
  /** Requests waiting for the first connection, not published yet (rare: kept here, not on each request). */
  readonly unpublished: Set<object>;
  /** Each request's span, with an OpenTelemetry SDK only (kept here, not on each request). */
  readonly traces: Map<object, RequestTrace>;
  /** Whether the view holds this instance as draining. */
  isDraining(instanceId: string): boolean;
  /** Whether the view holds this instance on an unsolicited hello alone (see `MembershipView`). */
  isUnvouched(instanceId: string): boolean;
  /** Whether this caller's PUBLISHes have been waiting on Redis too long (see `PublishWatch`). */
  redisUnanswering(): boolean;
  /** Starts a `who` round (or joins the one under way); false if none can be sent. */
  confirmMembers(): boolean;
  /** See `MembershipView.servingNow`. */
  servingNow(pattern: string, to: string | undefined): ReadonlySet<string>;
}


/**
 * A request's `Gatherer`, with what the requester adds around it: the routing entry is dropped
 * and the span ended when the request ends, and it is the caller's handle to cancel it. One
 * object per request.
 */
class RequestGatherer<T> extends Gatherer<T> implements RequestHandle {
  constructor(
    private readonly owner: RequestOwner,
    id: string,
    pattern: string,
    call: ResolvedCallOptions<T>,
    sink: GatherSink<T>,
    clock: Clock,
    trace: RequestTrace | undefined,
  ) {
    super(id, pattern, call, sink, clock);
    if (trace !== undefined) owner.traces.set(this, trace);
  }

  /** Handed to the coalescer (or about to be). */
  markPublished(): void {
    this.owner.unpublished.delete(this);
  }

  /** Waits for the first connection before it can be handed to the coalescer. */
  markUnpublished(): void {
    this.owner.unpublished.add(this);
  }

  protected override uncountedReason(instanceId: string): MissingReason | undefined {
    if (this.owner.isUnvouched(instanceId)) return undefined;
    return this.owner.isDraining(instanceId) ? 'draining' : 'not-counted';
  }

  protected override isVouched(instanceId: string): boolean {
    return !this.owner.isUnvouched(instanceId);
  }

  protected override redisUnanswering(): boolean {
    return this.owner.redisUnanswering();
  }

  protected override confirmMembers(): boolean {
    return this.owner.confirmMembers();
  }

  protected override knownServing(): ReadonlySet<string> | undefined {
    return this.owner.servingNow(this.pattern, this.rules.to);
  }

  protected override completed(result: GatherResult<T>, timedOut: BufferTimeoutError<T> | undefined): void {
    const unpublished = this.release();
    const trace = this.takeTrace();
    if (unpublished && result.completedBy === 'timeout') {
      const error = new ConnectionLostError(`not connected to Redis within the request's timeout (${this.rules.timeout} ms)`);
      this.owner.telemetry.endRequest(trace, result, error);
      this.sink.fail(error, result);
    } else {
      this.owner.telemetry.endRequest(trace, result);
      this.sink.complete(result, timedOut);
    }
  }

  protected override failed(error: Error, result: GatherResult<T>): void {
    this.release();
    this.owner.telemetry.endRequest(this.takeTrace(), result, error);
    this.sink.fail(error, result);
  }

  /** Cancels the request at once: no more replies reach the sink, its timers stop, its span ends. */
  override cancel(): void {
    if (!this.isEnded) this.owner.telemetry.endSend(this.takeTrace(), { 'nestjs_redis_buffer.cancelled': true });
    super.cancel();
    this.release();
  }

  /** Drops what the requester holds for this request; true if it was never published. */
  private release(): boolean {
    this.owner.pending.delete(this.requestId);
    return this.owner.unpublished.size > 0 && this.owner.unpublished.delete(this);
  }

  private takeTrace(): RequestTrace | undefined {
    const traces = this.owner.traces;
    if (traces.size === 0) return undefined;
    const trace = traces.get(this);
    traces.delete(this);
    return trace;
  }

  /** `cancel`, under the name rxjs calls on a teardown. */
  unsubscribe(): void {
    this.cancel();
  }
}

export type { GatherResult, InstanceInfo };
