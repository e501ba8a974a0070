import { TimerPool, type Clock, type TimerHandle, type TimerTarget } from '../clock.js';
import type { ReplyEnvelope } from '../wire/envelope.js';
import { BufferTimeoutError } from '../errors/buffer-timeout.error.js';
import { CallbackError } from '../errors/callback.error.js';
import { NoRespondersError } from '../errors/no-responders.error.js';
import type { ResolvedCallOptions } from '../options.js';
import type { BufferReply, CompletedBy, GatherResult, MissingReason, RedisAnswer } from './reply.js';
import type { AcceptOutcome, GatherSink } from './gather-sink.js';
import { AwaitedInstances } from './awaited-instances.js';
import { isDone } from './instance-progress.js';
import { NO_REASONS, countObservers, nameMissing, namedAtOnce, withAll, type InstanceJudge } from './whole-or-named.js';
import { replyOf, resultOf, valueReply, type ResultEnding } from './replies.js';
import { TopicDeliveries } from './topic-deliveries.js';
import type { RareState } from './gatherer-state.js';

const NO_ROUTES: readonly string[] = Object.freeze([]);

// Start times are kept as offsets from this, so that they stay small integers.
const TIME_BASE = Date.now();

/**
 * The completion rules of one request, as a state machine with no I/O: every receiver done,
 * `quorum`, `until`, `stall`, and `timeout` over them all.
 *
 * "Every receiver done" has two sources of truth:
 * - Redis's count of receivers (`expected`): the request is complete when that many instances have
 *   finished;
 * - the instances the caller knows received it (`awaited`, from the membership view): the request
 *   is also complete when each of them has finished or is known to be gone. Receivers beyond them
 *   are not instances (an observer), and never answer; an instance that froze or vanished stops
 *   counting once the liveness check says so.
 *
 * Replies may arrive before Redis has said how many instances received the request (the inbox and
 * the publisher are different connections), so completion is evaluated whenever either side moves.
 *
 * Neither source is trusted alone. Redis's count is only locally true (one node of a cluster, a
 * master that just took over, a subscription lost); the view is only eventually true. So:
 * - when the count is reached while instances the view knows serve the pattern have not finished,
 *   Redis did not count them: the request completes, naming them (`not-counted`, `draining`);
 * - when Redis never answered the PUBLISH, nothing completes it but the timeout, and every instance
 *   the view knew serves the pattern is named (`redis-unanswered`);
 * - a result says it is whole (`'all'` or `'stall'` with `missing` empty) only when every known
 *   instance finished and every counted receiver finished or is an observer. `nameMissing` builds
 *   `missing` from that rule, so no completion path can skip it.
 */
export class Gatherer<T = unknown> extends AwaitedInstances implements TimerTarget, InstanceJudge {
  private expected: number | undefined;
  // The instances the view knew serve the pattern when the request was sent, before Redis answered:
  // whom a result names when Redis never says how many received it.
  private known: ReadonlySet<string> | undefined;
  // The membership view's `sendMark` when the request was sent, then when Redis's count arrived
  // (see `instanceGone`).
  private sentMark = Number.POSITIVE_INFINITY;
  // What few requests need (a stall timer, a rule decided early, a topic's deliveries), in one object
  // made on demand: fewer fields on every request (memory per request in flight).
  private rare: RareState | undefined;
  private finishedCount = 0;
  // Every reply in arrival order; values and errors are told apart when a result is made (most
  // requests have no error reply, and then the values are this array itself).
  private arrived: Array<BufferReply<T>> | undefined;
  private timeoutTimer: TimerHandle | undefined;
  private ended = false;
  // When the request started, as an offset from TIME_BASE: a small integer, not a heap number.
  private readonly startOffset: number;

  constructor(
    readonly requestId: string,
    readonly pattern: string,
    readonly rules: ResolvedCallOptions<T>,
    protected readonly sink: GatherSink<T>,
    private readonly clock: Clock,
  ) {
    super();
    this.startOffset = clock.now() - TIME_BASE;
    this.timeoutTimer = clock instanceof TimerPool ? clock.setTimerFor(this, rules.timeout) : clock.setTimer(() => this.onTimer(), rules.timeout);
  }

  /** The request's timeout passed (a `TimerTarget`: no closure per request). */
  onTimer(): void {
    // `quorum` and `until` are the caller's own rules and hold without the count (the result still
    // says Redis did not answer); `stall` claims every receiver finished, which needs the count.
    const decided = this.rare?.decided;
    this.finish(decided === undefined || (decided === 'stall' && this.expected === undefined) ? 'timeout' : decided);
  }

  /**
   * The request is being published: `known` is whom the membership view knows serves the pattern
   * now (`undefined` when it cannot tell). Named in `missing` if Redis never answers the PUBLISH.
   * `mark` is the view's `sendMark` now.
   */
  sent(known: ReadonlySet<string> | undefined, mark = Number.NEGATIVE_INFINITY): void {
    this.known = known;
    if (known !== undefined) this.trackAmong(known);
    this.sentMark = mark;
  }

  /** A topic request: also published on the channels of these wildcard bindings (none: an exact request). */
  routeVia(routes: readonly string[]): void {
    if (routes.length > 0) (this.rare ??= {}).topic = new TopicDeliveries(routes);
  }

  /** The wildcard bindings this request was also published on (empty for an exact request). */
  get topicRoutes(): readonly string[] {
    return this.rare?.topic?.routes ?? NO_ROUTES;
  }

  /** Before `expect`, for a topic request: the deliveries beyond the first each awaited instance receives. */
  expectExtraDeliveries(extra: ReadonlyMap<string, number>): void {
    const topic = this.rare?.topic;
    if (topic !== undefined && extra.size > 0) topic.extra = extra;
  }

  /** When the request started, by the clock's `now()`. */
  get startedAt(): number {
    return TIME_BASE + this.startOffset;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** This caller's clock now: a request's `sent` as it is published, and what its `ttl` is counted from. */
  now(): number {
    return this.clock.now();
  }

  /** Milliseconds the caller will still wait at `now`: what the request carries as its `ttl`. */
  remainingMs(now = this.clock.now()): number {
    return Math.max(0, this.startedAt + this.rules.timeout - now);
  }

  /**
   * Redis's count of receivers, and the instances known to have received the request (`undefined`
   * when the membership view is not usable: then only the count decides), among which `newcomers`
   * may have (see `RareState.newcomers`). `0` fails at once with `NoRespondersError`.
   */
  expect(receivers: number, awaited?: ReadonlySet<string>, silent?: ReadonlyMap<string, MissingReason>, newcomers?: ReadonlySet<string>): void {
    if (this.ended) return;
    this.expected = receivers;
    if (newcomers !== undefined && newcomers.size > 0) (this.rare ??= {}).newcomers = newcomers;
    const decided = this.rare?.decided;
    // A stall decided while the count was on its way, when every counted receiver had in fact
    // finished: the result is whole, and says so.
    if (decided !== undefined) return this.finish(decided === 'stall' && this.finishedDeliveries() >= receivers ? 'all' : decided);
    // Nobody subscribed: nobody will answer. Unless the view vouches for instances serving the
    // pattern: Redis did not count them (a subscription lost on the server, a slot moving), and
    // the result names them rather than saying no instance handles it.
    if (receivers === 0) {
      if (awaited === undefined || ![...awaited].some((id) => this.isVouched(id))) return this.noResponders();
      this.setAwaited(awaited, silent);
      return this.checkAll();
    }
    // The view knows the namespace's instances, none of which handles the pattern: either only
    // subscribers that are not instances, or an instance whose hello is still on its way (it
    // announces itself after subscribing, on another connection than the PUBLISH's answer).
    // Unless every receiver Redis counted finished already (one that answered and then left).
    if (awaited !== undefined && awaited.size === 0 && this.finishedDeliveries() < receivers) {
      if (!this.confirmMembers()) return this.noResponders();
      (this.rare ??= {}).confirming = true;
      return;
    }
    if (awaited !== undefined) this.setAwaited(awaited, silent);
    this.checkAll();
  }

  /**
   * The membership view became usable after the receiver count arrived (the caller's first `who`
   * round ended): take the instances it knows received the request, if none were given yet.
   */
  adoptAwaited(awaited: ReadonlySet<string> | undefined, silent: ReadonlyMap<string, MissingReason>): void {
    if (this.ended || this.expected === undefined || this.awaited !== undefined || awaited === undefined) return;
    if (awaited.size === 0) {
      // A `who` round sent after the request found no instance for the pattern, and no receiver
      // answered: those Redis counted are not instances.
      if (this.rare?.confirming === true && this.finishedCount === 0 && !this.anyReplied) return this.noResponders();
      // Receivers that answered meanwhile may have finished every delivery Redis counted.
      return this.checkAll();
    }
    this.setAwaited(awaited, silent);
    this.checkAll();
  }

  private noResponders(): void {
    this.end();
    this.failed(new NoRespondersError(this.pattern, this.rules.to, this.expected ?? 0), this.result('all'));
  }

  /** Asks for a `who` round, whose end calls `adoptAwaited` (a subclass that keeps a view can); false when there is none to ask. */
  protected confirmMembers(): boolean {
    return false;
  }

  private setAwaited(awaited: ReadonlySet<string>, silent: ReadonlyMap<string, MissingReason> | undefined): void {
    this.takeAwaited(awaited);
    if (silent !== undefined && silent.size > 0) for (const [id, reason] of namedAtOnce(this.receivingInstances(), awaited, silent)) this.markGone(id, reason);
  }

  /** The instances this request still waits for (known receivers not finished nor gone). */
  waitingOn(): string[] {
    return this.ended ? [] : this.unsettled();
  }

  /** A member nothing vouched for was dropped from the view: the request stops waiting for it, naming nobody. */
  instanceDismissed(instanceId: string): void {
    if (this.ended || this.awaited === undefined || !this.awaited.has(instanceId) || this.isSettled(instanceId)) return;
    this.dismiss(instanceId);
    this.checkAll();
  }

  /** Redis's count is about to be given (`expect`): `mark` is the view's `sendMark` now. */
  countedAt(mark: number): void {
    this.sentMark = mark;
  }

  /**
   * An instance stopped showing signs of life, or left: the request stops waiting for it. With
   * `sentBefore` (a view's `sendMark`: when a restarted instance's first hello arrived), only if
   * Redis's count for this request arrived before that mark. Sent after the hello arrived, the
   * request was published after the new incarnation subscribed. Counted after, it most likely was
   * too (Redis handled the hello's PUBLISH first), and if it was not, the id was not among Redis's
   * receivers or the old process received it: the count settles the first, the timeout the second;
   * neither is ever a live instance named `left`.
   */
  instanceGone(instanceId: string, reason: MissingReason, sentBefore?: number): void {
    if (sentBefore !== undefined && this.sentMark >= sentBefore) return;
    if (this.ended || !this.markGone(instanceId, reason)) return;
    this.checkAll();
  }

  accept(envelope: ReplyEnvelope): AcceptOutcome {
    if (this.ended || this.rare?.decided !== undefined) return 'late';
    if (envelope.repeat !== undefined) return this.acceptRepeat(envelope.from, envelope.repeat);
    const hasError = Object.hasOwn(envelope, 'error');
    const carries = hasError || Object.hasOwn(envelope, 'data');
    return this.acceptFrom(envelope.from, envelope.seq, envelope.done, carries ? replyOf<T>(envelope, hasError) : undefined);
  }

  /** A value reply that came in the compact form: `accept` of the object form, without that object. */
  acceptValue(from: string, seq: number, done: boolean, data: unknown): AcceptOutcome {
    if (this.ended || this.rare?.decided !== undefined) return 'late';
    return this.acceptFrom(from, seq, done, valueReply<T>(from, seq, data));
  }

  /** `reply`: what the envelope carries for the caller, if anything (a closing envelope carries nothing). */
  private acceptFrom(from: string, seq: number, done: boolean, reply: BufferReply<T> | undefined): AcceptOutcome {
    const known = this.progressOf(from);
    if (known !== undefined && (isDone(known) || seq <= known)) return 'duplicate';
    this.setProgress(from, done ? -(seq + 1) : seq);
    if (reply !== undefined) {
      (this.arrived ??= []).push(reply);
      this.sink.next(reply);
      // The sink may have cancelled us (an unsubscribe from inside `next`).
      if (this.ended) return 'accepted';
      if (this.rules.until !== undefined) {
        let matched: boolean;
        try {
          matched = this.rules.until(reply);
        } catch (error) {
          this.fail(new CallbackError('until', this.pattern, error));
          return 'accepted';
        }
        if (matched) return this.decide('until'), 'accepted';
      }
      this.armStall();
    }
    if (done) {
      this.finishedCount++;
      this.settleFinished(from);
      if (this.rules.quorum !== undefined && this.finishedCount >= this.rules.quorum) return this.decide('quorum'), 'accepted';
      this.checkAll();
    }
    return 'accepted';
  }

  /**
   * An instance received this topic request again, on the channel of its binding `binding`, and
   * counts that delivery as finished: Redis counted it among the receivers, so completion by count
   * needs it. One per (instance, binding); it is not a reply and ends nobody's answer.
   */
  private acceptRepeat(from: string, binding: string): AcceptOutcome {
    if (!((this.rare ??= {}).topic ??= new TopicDeliveries(NO_ROUTES)).repeat(from, binding)) return 'duplicate';
    this.checkAll();
    return 'accepted';
  }

  /** Deliveries finished: instances done, plus the repeat deliveries counted (Redis's count is of deliveries). */
  private finishedDeliveries(): number {
    return this.finishedCount + (this.rare?.topic?.count ?? 0);
  }

  /**
   * Redis's count in instances: for a topic request, without the deliveries beyond the first each
   * instance received (as its repeat replies say, or else as the view says of it).
   */
  private receivingInstances(): number | undefined {
    const topic = this.rare?.topic;
    return this.expected === undefined || topic === undefined ? this.expected : topic.instances(this.expected);
  }

  /** Ends the request with an error (for example the connection was lost). */
  fail(error: Error): void {
    if (this.ended) return;
    this.end();
    this.failed(error, this.result('timeout'));
  }

  /** Stops every timer without telling the sink: the caller unsubscribed. */
  cancel(): void {
    this.end();
  }

  result(completedBy: CompletedBy): GatherResult<T> {
    const expected = this.receivingInstances();
    const redis: RedisAnswer = this.expected === undefined || (completedBy === 'timeout' && this.redisUnanswering()) ? 'unanswered' : 'answered';
    // The usual ending names nobody: what nameMissing would find, without its walk.
    if (completedBy === 'all' && this.wholeByFinishing()) return this.resultWith({ completedBy, expected, redis, missing: [], missingReasons: NO_REASONS, observers: 0 });
    const { missing, missingReasons } = nameMissing({
      completedBy,
      redis,
      expected,
      finished: this.finishedCount,
      gone: this.gone,
      newcomers: this.rare?.newcomers,
      // Sent before the view was usable: whom it knows of now (not for 'all': they may have joined after the PUBLISH).
      // Redis never counted: whoever the view knows serves the pattern now may have received it too
      // (one that announced its drain may be back under a new process whose hello was lost).
      known: this.awaited ?? (this.expected === undefined && this.known !== undefined ? withAll(this.known, this.knownServing()) : this.known) ?? (completedBy === 'all' || completedBy === 'quorum' || completedBy === 'until' ? undefined : this.knownServing()),
      startedUnfinished: this.startedUnfinished(),
      judge: this,
    });
    return this.resultWith({ completedBy, expected, redis, missing, missingReasons, observers: countObservers(expected, this.finishedCount, missingReasons) });
  }

  /**
   * Every awaited instance finished (none taken for gone or dismissed, no other instance left
   * midway) and at least as many instances as Redis counted: a whole result, with no receiver
   * unaccounted for. An exact request only (a topic request's count is of deliveries).
   */
  private wholeByFinishing(): boolean {
    const expected = this.expected;
    const rare = this.rare;
    return expected !== undefined && this.finishedCount >= expected && rare?.topic === undefined && rare?.newcomers === undefined && this.allAwaitedFinished() && !this.anyStartedUnfinished();
  }

  private resultWith(ending: ResultEnding): GatherResult<T> {
    return resultOf((this.arrived ??= []), ending, this.finishedCount, this.clock.now() - this.startedAt);
  }

  /** Every reply so far, values and errors, in arrival order. */
  allReplies(): ReadonlyArray<BufferReply<T>> {
    return (this.arrived ??= []);
  }

  private checkAll(): void {
    if (this.expected === undefined) return;
    // Every known instance finished or is gone; counted receivers beyond them are observers.
    if (this.allAwaitedSettled()) return this.finish('all');
    if (this.finishedDeliveries() < this.expected) return;
    // Every receiver Redis counted finished, yet instances the view knows serve the pattern did not:
    // Redis did not count them (they never got the request). Named, never dropped.
    for (const id of this.waitingOn()) {
      // Said hello while the request was on its way, and not among the receivers: it subscribed after.
      if (this.rare?.newcomers?.has(id) === true) {
        this.dismiss(id);
        continue;
      }
      const reason = this.uncountedReason(id);
      if (reason !== undefined) this.markGone(id, reason);
      else this.dismiss(id);
    }
    this.finish('all');
  }

  /**
   * Why an instance the view expected was not among Redis's receivers (a subclass may know more);
   * `undefined` when the view only heard of it and nothing vouches for it: a forged hello must not
   * make a request partial on its own.
   */
  protected uncountedReason(instanceId: string): MissingReason | undefined {
    return this.isVouched(instanceId) ? 'not-counted' : undefined;
  }

  servingNow(): ReadonlySet<string> | undefined {
    return this.awaited === undefined ? undefined : this.knownServing();
  }

  /**
   * The instances a membership view holds now that serve this request, synced or not (a subclass
   * that keeps a view can tell): whom a result names when the request was sent before the view was
   * usable and has not adopted an awaited set since (those nothing vouched for, only as far as
   * Redis's count leaves room).
   */
  protected knownServing(): ReadonlySet<string> | undefined {
    return undefined;
  }

  /** Whether an exchange vouches for this member (the requester knows; alone, every member is). */
  isVouched(_instanceId: string): boolean {
    return true;
  }

  /** Whether Redis is not answering this caller now (its PUBLISHes waited too long): a timeout then blames Redis, not the instances. A subclass can tell. */
  protected redisUnanswering(): boolean {
    return false;
  }

  private armStall(): void {
    if (this.rules.stall === undefined) return;
    this.clearStall();
    (this.rare ??= {}).stallTimer = this.clock.setTimer(() => this.decide('stall'), this.rules.stall);
  }

  private decide(completedBy: CompletedBy): void {
    if (this.expected !== undefined) return this.finish(completedBy);
    (this.rare ??= {}).decided = completedBy;
    this.clearStall();
  }

  private finish(completedBy: CompletedBy): void {
    if (this.ended) return;
    this.end();
    const result = this.result(completedBy);
    const timedOut = completedBy === 'timeout' ? new BufferTimeoutError<T>(this.pattern, this.rules.timeout, this.allReplies(), result.expected, this.finishedCount, result.missing, result.missingReasons, result.redis) : undefined;
    this.completed(result, timedOut);
  }

  /** The request ended with `result` (a subclass may act first, then pass it on). */
  protected completed(result: GatherResult<T>, timedOut: BufferTimeoutError<T> | undefined): void {
    this.sink.complete(result, timedOut);
  }

  /** The request failed with `error` (a subclass may act first, then pass it on). */
  protected failed(error: Error, result: GatherResult<T>): void {
    this.sink.fail(error, result);
  }

  private end(): void {
    this.ended = true;
    if (this.timeoutTimer !== undefined) this.clock.clearTimer(this.timeoutTimer);
    this.timeoutTimer = undefined;
    this.clearStall();
  }

  private clearStall(): void {
    const rare = this.rare;
    if (rare?.stallTimer === undefined) return;
    this.clock.clearTimer(rare.stallTimer);
    rare.stallTimer = undefined;
  }
}
