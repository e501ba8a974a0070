import type { Clock } from '../clock.js';
import type { OutgoingEnvelope } from '../bus/coalescer.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import type { BufferTimeoutError } from '../errors/buffer-timeout.error.js';
import type { MembershipView } from '../membership/membership.js';
import { encodeCompactRequest, encodeRequestObject, type EncodedRequest } from '../wire/encode.js';
import type { OutboundEncoder } from './outbound-encoder.js';
import type { ResolvedCallOptions } from '../options.js';
import type { BufferTelemetry, RequestTrace } from '../telemetry/telemetry.js';
import { Gatherer } from './gatherer.js';
import type { InFlightRequests } from './in-flight.js';
import type { GatherSink } from './gather-sink.js';
import type { GatherResult, MissingReason } from './reply.js';

// One request of a `Requester`, as it travels: the envelope waiting in the coalescer
// (`OutgoingRequest`) and the request's `Gatherer` with what the requester adds around it.

/**
 * A request waiting in the coalescer: its parts encoded once, its `ttl` and `sent` written in when
 * it is flushed, as an object or, when every instance it waits for reads them, as a compact
 * request (with its batch's head: `batchHead`). A topic request is queued on its exact channel and
 * on each wildcard route's channel: the same object in several batches, so it hears one PUBLISH
 * result per channel and tells the gatherer their sum, once all are in.
 */
export class OutgoingRequest implements OutgoingEnvelope {
  // Whom the view knew serves the pattern when the request went out (see `Gatherer.sent`).
  private known: ReadonlySet<string> | undefined;
  private removalMark = 0;
  private encodedOnce = false;
  // Every instance it waits for said it reads compact requests (decided on the first flush).
  private compact = false;
  /** The head of its batch, when the last `encode()` gave the compact form. */
  batchHead: string | undefined = undefined;
  // A topic request: PUBLISH results still to come, and the receivers counted so far.
  private resultsDue: number;
  private receiversSoFar = 0;

  constructor(
    private readonly view: MembershipView,
    private readonly gatherer: Gatherer<unknown>,
    private readonly encoder: OutboundEncoder,
    private readonly parts: EncodedRequest,
    /** Its size in the object form (the larger). */
    readonly bytes: number,
  ) {
    this.resultsDue = 1 + gatherer.topicRoutes.length;
  }

  get cancelled(): boolean {
    return this.gatherer.isEnded;
  }

  encode(): string {
    const gatherer = this.gatherer;
    if (!this.encodedOnce) {
      this.encodedOnce = true;
      // An instance the view knows now said hello after subscribing: Redis must count it.
      this.known = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to, gatherer.topicRoutes);
      this.removalMark = this.view.removalMark;
      gatherer.sent(this.known, this.view.sendMark);
      this.compact = this.known !== undefined && this.view.readCompactRequests(this.known);
    }
    const now = gatherer.now();
    const ttl = gatherer.remainingMs(now);
    if (this.compact) {
      this.batchHead = this.encoder.head(now);
      return encodeCompactRequest(this.parts, ttl);
    }
    return encodeRequestObject(this.parts, ttl, now, this.encoder.fromJson, this.encoder.inboxJson);
  }

  /** Redis's count of receivers (for a topic request, one count per channel): whom the request waits for. */
  published(error: Error | undefined, receivers: number): void {
    const gatherer = this.gatherer;
    if (error !== undefined) return gatherer.fail(error);
    if (this.resultsDue > 1) {
      this.resultsDue--;
      this.receiversSoFar += receivers;
      return;
    }
    receivers += this.receiversSoFar;
    const routes = gatherer.topicRoutes;
    // Known when it was sent and still a member now: one that said hello since may have subscribed
    // after the PUBLISH (not a receiver); one that left since answered first (a bye follows its
    // replies); one that started draining since still answers what it received.
    let awaited = this.known === undefined ? this.view.awaitedFor(gatherer.pattern, gatherer.rules.to, routes) : this.view.stillMembers(this.known, this.removalMark);
    // Those that said hello meanwhile may be receivers too: an instance announces itself after
    // subscribing, and its hello and this PUBLISH race on two connections.
    let newcomers: Set<string> | undefined;
    if (this.known !== undefined && awaited !== undefined) {
      const now = this.view.awaitedFor(gatherer.pattern, gatherer.rules.to, routes);
      if (now !== undefined && now !== this.known) {
        for (const id of now) if (!awaited.has(id)) (newcomers ??= new Set()).add(id);
        if (newcomers !== undefined) awaited = new Set([...awaited, ...newcomers]);
      }
    }
    const silent = this.view.silentAmong(awaited);
    // A silent instance is pinged again when a request skips it, so it can come back on its pong.
    if (silent.size > 0) this.view.repingSilent(silent.keys());
    if (routes.length > 0 && awaited !== undefined) gatherer.expectExtraDeliveries(this.extraDeliveries(awaited, routes));
    gatherer.countedAt(this.view.sendMark);
    gatherer.expect(receivers, awaited, silent, newcomers);
  }

  /** The deliveries beyond the first each awaited instance receives, by the bindings it announced. */
  private extraDeliveries(awaited: ReadonlySet<string>, routes: readonly string[]): Map<string, number> {
    const extra = new Map<string, number>();
    for (const id of awaited) {
      const deliveries = this.view.deliveriesTo(id, this.gatherer.pattern, routes);
      if (deliveries > 1) extra.set(id, deliveries - 1);
    }
    return extra;
  }
}

/** What `Requester.request` returns: cancels the request at once (also as an rxjs teardown). */
export interface RequestHandle {
  cancel(): void;
  unsubscribe(): void;
  /** Ends the request now as failed with `error` (its span and duration say so), then tells its sink. */
  fail(error: Error): void;
}

/** What every request of one requester shares. */
export interface RequestOwner {
  /** The requests in flight, with each one's span (see `InFlightRequests`). */
  readonly pending: InFlightRequests<Gatherer<unknown>, RequestTrace>;
  readonly telemetry: BufferTelemetry;
  /** Requests waiting for the first connection, not published yet (rare: kept here, not on each request). */
  readonly unpublished: Set<object>;
  /** Whether the view holds this instance as draining. */
  isDraining(instanceId: string): boolean;
  /** Whether the view holds this instance on an unsolicited hello alone (see `MembershipView`). */
  isUnvouched(instanceId: string): boolean;
  /** Whether this caller's PUBLISHes have been waiting on Redis too long (see `PublishWatch`). */
  redisUnanswering(): boolean;
  /** Starts a `who` round (or joins the one under way); false if none can be sent. */
  confirmMembers(): boolean;
  /** See `MembershipView.servingNow`. */
  servingNow(pattern: string, to: string | undefined, routes: readonly string[]): ReadonlySet<string>;
}


/**
 * A request's `Gatherer`, with what the requester adds around it: the routing entry is dropped
 * and the span ended when the request ends, and it is the caller's handle to cancel it. One
 * object per request.
 */
export class RequestGatherer<T> extends Gatherer<T> implements RequestHandle {
  constructor(
    private readonly owner: RequestOwner,
    id: string,
    pattern: string,
    call: ResolvedCallOptions<T>,
    sink: GatherSink<T>,
    clock: Clock,
  ) {
    super(id, pattern, call, sink, clock);
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

  override isVouched(instanceId: string): boolean {
    return !this.owner.isUnvouched(instanceId);
  }

  protected override redisUnanswering(): boolean {
    return this.owner.redisUnanswering();
  }

  protected override confirmMembers(): boolean {
    return this.owner.confirmMembers();
  }

  protected override knownServing(): ReadonlySet<string> | undefined {
    return this.owner.servingNow(this.pattern, this.rules.to, this.topicRoutes);
  }

  protected override completed(result: GatherResult<T>, timedOut: BufferTimeoutError<T> | undefined): void {
    const unpublished = this.dropUnpublished();
    const trace = this.release();
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
    this.dropUnpublished();
    this.owner.telemetry.endRequest(this.release(), result, error);
    this.sink.fail(error, result);
  }

  /** Cancels the request at once: no more replies reach the sink, its timers stop, its span ends. */
  override cancel(): void {
    const trace = this.release();
    if (!this.isEnded) this.owner.telemetry.endSend(trace, { 'nestjs_redis_buffer.cancelled': true });
    super.cancel();
    this.dropUnpublished();
  }

  /** Drops the routing entry; returns the request's span, if it has one and was still in flight. */
  private release(): RequestTrace | undefined {
    return this.owner.pending.delete(this.requestId);
  }

  /** True if it was never published (it waited for the first connection). */
  private dropUnpublished(): boolean {
    return this.owner.unpublished.size > 0 && this.owner.unpublished.delete(this);
  }

  /** `cancel`, under the name rxjs calls on a teardown. */
  unsubscribe(): void {
    this.cancel();
  }
}
