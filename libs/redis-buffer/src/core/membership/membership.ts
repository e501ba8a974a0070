import type { Clock } from '../clock.js';
import type { HelloEnvelope } from '../wire/envelope.js';
import type { MissingReason } from '../gather/reply.js';
import { isReplay, type InstanceInfo, type Member } from './member.js';
import { Liveness } from './liveness.js';
import { WildcardBindings } from './wildcard-bindings.js';

export type { InstanceInfo } from './member.js';

/** What a caller tells of an instance from its `hello`. */
export function infoOf(hello: HelloEnvelope): InstanceInfo {
  const info: InstanceInfo = { instanceId: hello.from, incarnation: hello.inc, patterns: [...hello.patterns], events: [...hello.events] };
  return hello.draining === true ? { ...info, draining: true } : info;
}

const NONE: readonly string[] = Object.freeze([]);
const NO_ABSENT: ReadonlyMap<string, MissingReason> = new Map();

/** Patterns (and topics) whose awaited set is remembered at once; past it the memory starts over. */
const MAX_CACHED_AWAITED = 4096;

/** What the view needs from the caller's side of the protocol. */
export interface MembershipHost {
  /** Sends a ping to one instance's direct channel; resolves with Redis's receiver count (-1: not sent). */
  ping(instanceId: string): Promise<number>;
  /**
   * Tells every open request that an instance it may wait for will not answer; with `sentBefore`,
   * only requests sent before that `sendMark` (a restarted instance: later ones reached the new process).
   */
  instanceGone(instanceId: string, reason: MissingReason, sentBefore?: number): void;
  /** Tells every open request to stop waiting for a member nothing vouched for, without naming it. */
  instanceDismissed(instanceId: string): void;
}

/** How a `hello` was taken. */
export type HelloOutcome = 'known' | 'new' | 'unvouched' | 'replayed' | 'dropped';

/**
 * At most this many members no exchange has vouched for: forged hellos with random ids cannot grow
 * the table past it (hellos from further unknown ids are dropped until a `who` round clears them).
 */
export const MAX_UNVOUCHED_MEMBERS = 1024;

/**
 * The caller's view of the instances of a namespace: who is there and which patterns each answers,
 * so that a request knows whom it waits for, and whether each of them still shows signs of life.
 *
 * It is built from what instances publish (`hello` on joining or when asked by `who`, `bye` on
 * leaving) and kept honest by pings sent only to vouched instances a request has waited on for a
 * while (one ping per instance per liveness round, whatever the number of requests): an instance
 * Redis no longer counts on its direct channel is gone; one that does not answer a ping Redis
 * delivered within the liveness bound is silent (frozen, partitioned). Silent instances are pinged
 * again at each round while requests are open, so they come back without having to speak first.
 */
export class MembershipView {
  private readonly members = new Map<string, Member>();
  private awaitedCache = new Map<string, ReadonlySet<string>>();
  // `readCompactRequests` by set (most are `awaitedCache`'s, shared by every request to a pattern);
  // made anew whenever a member comes, goes or changes incarnation.
  private compactSets = new WeakMap<ReadonlySet<string>, boolean>();
  /** The wildcard request patterns the members announce: the extra channels of a topic request. */
  readonly requestBindings = new WildcardBindings(() => this.announced('patterns'));
  /** The wildcard event patterns the members announce: the extra channels of a topic event. */
  readonly eventBindings = new WildcardBindings(() => this.announced('events'));
  private synced = false;
  // A `who` round has ended once: after a loss of the subscriber, what the view knew still names
  // the instances a request may miss (they may be re-subscribing) until the next round ends.
  private everSynced = false;
  // Pings, silence and absence: see `Liveness`.
  private readonly liveness: Liveness;
  private unvouchedCount = 0;
  // Counts removals, so that a request can tell in O(1) that nobody it knew of has left since.
  private removals = 0;
  // Counts every sign of life (hello, reply, pong), to tell who spoke during a `who` round.
  private signs = 0;

  constructor(
    private readonly host: MembershipHost,
    private readonly livenessTimeout: number,
    private readonly clock: Clock,
  ) {
    const members = this.members;
    this.liveness = new Liveness(
      { members, signs: () => this.signs, changed: () => this.awaitedCache.clear(), remove: (id, reason) => this.remove(id, reason) },
      host,
      livenessTimeout,
      clock,
    );
  }

  /** Whether the view is complete enough to decide who a request waits for. */
  get isSynced(): boolean {
    return this.synced;
  }

  /** How many entries the table holds (vouched or not). */
  get size(): number {
    return this.members.size;
  }

  /** A mark to pass to `markSynced` for a `who` round starting now. */
  roundStart(): number {
    return this.signs;
  }

  /**
   * After a `who` round: the view now knows every instance that answered. `complete` is the set of
   * those that answered when every receiver of the `who` did. A vouched member that did not answer
   * and gave no sign of life since the round started (`since`) is pinged on its direct channel:
   * nobody there (a count of 0) means it is gone; otherwise it stays, and the liveness rounds judge
   * it (a draining instance has left the `who` channel but still answers pings and its requests).
   * An unvouched one gets `livenessTimeout` from its hello to be vouched for (a hand-written
   * responder that does not answer `who` is vouched for by its first reply). Returns how many unvouched
   * members a later complete round could clear (none after an incomplete round: another would
   * most likely be incomplete too, and the table is bounded anyway).
   */
  markSynced(since: number, complete?: ReadonlySet<string>): number {
    this.synced = true;
    this.everSynced = true;
    if (complete !== undefined) {
      const now = this.clock.now();
      for (const [id, member] of [...this.members]) {
        if (complete.has(id) || member.lastSign > since) continue;
        if (member.vouched) {
          if (!member.pingInFlight) this.liveness.sendPing(id, member, member.pingSentAt === undefined);
        } else if (now - member.joinedAt >= this.livenessTimeout) this.remove(id, 'left');
      }
    }
    return complete === undefined ? 0 : this.unvouchedCount;
  }

  /** The subscriber was lost: `hello`s and `bye`s may have been missed until the next `who` round. */
  markUnsynced(): void {
    this.synced = false;
  }

  /** Live instances vouched for, in the order they became known. */
  list(): InstanceInfo[] {
    const live: InstanceInfo[] = [];
    for (const member of this.members.values()) if (!member.silent && member.vouched) live.push(member.info);
    return live;
  }

  /** Whether `instanceId` is in the view on an unsolicited hello alone (see `Member.vouched`). */
  isUnvouched(instanceId: string): boolean {
    return this.members.get(instanceId)?.vouched === false;
  }

  /** Whether `instanceId` announced it is draining. */
  isDraining(instanceId: string): boolean {
    return this.members.get(instanceId)?.draining === true;
  }

  /**
   * An instance introduced itself; `solicited` when it came to this caller's inbox in answer to its
   * `who`. A new incarnation under a known id means the old one is gone, unless the hello is older
   * than what the view holds (a replay: see `isReplay`).
   */
  hello(envelope: HelloEnvelope, solicited: boolean): HelloOutcome {
    const known = this.members.get(envelope.from);
    if (known !== undefined && isReplay(known, envelope.inc, envelope.seq, envelope.at)) return 'replayed';
    if (known === undefined && !solicited && this.unvouchedCount >= MAX_UNVOUCHED_MEMBERS) return 'dropped';
    const sameIncarnation = known !== undefined && known.info.incarnation === envelope.inc;
    // Another incarnation claiming a vouched member's id, unasked: anyone can publish that. The
    // member stays until a `who` round (or a pong) shows the new incarnation is real.
    if (known !== undefined && known.vouched && !sameIncarnation && !solicited) {
      if (known.next?.incarnation !== envelope.inc) known.next = { incarnation: envelope.inc, seenAt: ++this.signs };
      return 'unvouched';
    }
    if (known !== undefined && !sameIncarnation) this.switchIncarnation(known, envelope.inc);
    this.liveness.forget(known);
    const vouched = solicited || (sameIncarnation && known.vouched);
    if (known !== undefined && !known.vouched) this.unvouchedCount--;
    if (!vouched) this.unvouchedCount++;
    this.members.set(envelope.from, {
      info: infoOf(envelope),
      patterns: new Set(envelope.patterns),
      vouched,
      draining: envelope.draining === true,
      readsCompact: envelope.cq === 1,
      joinedAt: sameIncarnation ? known.joinedAt : this.clock.now(),
      lastHeard: this.clock.now(),
      heardSinceCheck: false,
      lastSign: ++this.signs,
      pingSentAt: undefined,
      pingInFlight: false,
      lastPingAt: 0,
      silent: false,
      absentAs: 'silent',
      silentSince: 0,
      revivedByCount: false,
      seq: envelope.seq,
      at: envelope.at,
      next: undefined,
    });
    this.awaitedCache.clear();
    this.compactSets = new WeakMap();
    this.bindingsChanged();
    return known !== undefined ? 'known' : vouched ? 'new' : 'unvouched';
  }

  /** An instance left after answering everything it had received. False when ignored (stale or replayed). */
  bye(instanceId: string, incarnation: string, seq?: number, at?: number): boolean {
    const known = this.members.get(instanceId);
    if (known === undefined) return false;
    if (known.info.incarnation !== incarnation || isReplay(known, incarnation, seq, at)) return false;
    this.remove(instanceId, 'left');
    return true;
  }

  /** Something arrived from this instance (a reply or a pong): it is alive, and vouched for. */
  heard(instanceId: string, incarnation?: string): void {
    const member = this.members.get(instanceId);
    if (member === undefined) return;
    if (incarnation !== undefined && incarnation !== member.info.incarnation) {
      this.switchIncarnation(member, incarnation);
      member.info = { ...member.info, incarnation };
      // A process restarted under this id, perhaps of another version: objects until its hello says.
      member.readsCompact = false;
      this.compactSets = new WeakMap();
      member.seq = undefined;
      member.at = undefined;
      member.next = undefined;
    }
    member.heardSinceCheck = true;
    member.revivedByCount = false;
    member.lastSign = ++this.signs;
    if (!member.vouched) {
      member.vouched = true;
      this.unvouchedCount--;
      this.awaitedCache.clear();
      this.bindingsChanged();
    }
    this.liveness.wake(member);
  }

  /**
   * A pong on the members channel (answering some caller's shared ping): a sign of life of the
   * incarnation the view holds, and nothing more. Anyone can publish there, so it neither vouches
   * for a member nor tells of a new incarnation: one from another incarnation of a vouched member
   * returns true, and the caller asks `who` (whose answer does tell).
   */
  heardShared(instanceId: string, incarnation: string): boolean {
    const member = this.members.get(instanceId);
    if (member === undefined || !member.vouched) return false;
    if (member.info.incarnation !== incarnation) return true;
    this.heard(instanceId);
    return false;
  }

  /**
   * The instances known to receive a request for `pattern` (or the one named by `to`): not
   * draining, silent and unvouched ones included (see `silentAmong`); empty when the view knows instances but
   * none for the pattern; `undefined` when the view cannot tell (no `who` round has ended yet, knows no vouched
   * instance, or `to` names an instance it does not vouch for), in which case Redis's receiver count
   * alone decides completion.
   *
   * `routes`: the wildcard bindings a topic request was also published on (`requestBindings`); an
   * instance is a receiver when it binds `pattern` itself or one of them.
   */
  awaitedFor(pattern: string, to: string | undefined, routes: readonly string[] = NONE): ReadonlySet<string> | undefined {
    // Knowing no instance at all is no evidence (under another signing key, none can be heard).
    if (!this.everSynced || this.members.size === this.unvouchedCount) return undefined;
    if (to !== undefined) {
      const member = this.members.get(to);
      return member === undefined || !member.vouched ? undefined : new Set([to]);
    }
    const key = routes.length === 0 ? pattern : `${pattern}\u0000${routes.join('\u0000')}`;
    let awaited = this.awaitedCache.get(key);
    if (awaited === undefined) {
      const ids = new Set<string>();
      for (const [id, member] of this.members) if (!member.draining && bindsAny(member.patterns, pattern, routes)) ids.add(id);
      awaited = ids;
      if (this.awaitedCache.size >= MAX_CACHED_AWAITED) this.awaitedCache.clear();
      this.awaitedCache.set(key, awaited);
    }
    return awaited;
  }

  /**
   * Whether every instance in `ids` (one of `awaitedFor`'s sets) reads compact requests: each said
   * `"cq":1` in its hello. False for an empty set, and for an id the view no longer holds.
   */
  readCompactRequests(ids: ReadonlySet<string>): boolean {
    // One instance (a direct request's set, made anew per call): one lookup, nothing to cache.
    if (ids.size === 1) for (const id of ids) return this.members.get(id)?.readsCompact === true;
    let all = this.compactSets.get(ids);
    if (all !== undefined) return all;
    all = ids.size > 0;
    for (const id of ids) {
      if (this.members.get(id)?.readsCompact !== true) {
        all = false;
        break;
      }
    }
    this.compactSets.set(ids, all);
    return all;
  }

  /**
   * How many deliveries of a topic request published on `pattern`'s channel and on each of `routes`
   * this member receives, by what it announced (1 for an exact request).
   */
  deliveriesTo(instanceId: string, pattern: string, routes: readonly string[]): number {
    const patterns = this.members.get(instanceId)?.patterns;
    if (patterns === undefined) return 1;
    let count = patterns.has(pattern) ? 1 : 0;
    for (const route of routes) if (patterns.has(route)) count++;
    return Math.max(1, count);
  }

  /**
   * How many deliveries of a topic event published on `pattern`'s channel and on each of `routes`
   * go beyond the first to the same instance, by what the members (not draining) announced: what
   * separates Redis's summed count from a count of instances.
   */
  extraEventDeliveries(pattern: string, routes: readonly string[]): number {
    let extra = 0;
    for (const member of this.members.values()) {
      if (member.draining) continue;
      const events = member.info.events;
      let count = events.includes(pattern) ? 1 : 0;
      for (const route of routes) if (events.includes(route)) count++;
      if (count > 1) extra += count - 1;
    }
    return extra;
  }

  /**
   * The live members serving `pattern` (or the one `to` names; or binding one of a topic request's
   * `routes`), whether or not the view is synced, unvouched and draining ones included: whom a
   * timeout names when nothing better is known (when Redis did not answer, a draining member's id
   * may already serve again under a new process whose hello did not reach this caller: naming it is
   * the safe side).
   */
  servingNow(pattern: string, to: string | undefined, routes: readonly string[] = NONE): ReadonlySet<string> {
    const ids = new Set<string>();
    for (const [id, member] of this.members) {
      if (member.silent) continue;
      if (to !== undefined ? id === to : bindsAny(member.patterns, pattern, routes)) ids.add(id);
    }
    return ids;
  }

  /** A mark for `instanceGone`'s `sentBefore`: taken when a request is sent. */
  get sendMark(): number {
    return this.signs;
  }

  /**
   * A restarted process under a member's id is confirmed: the incarnation requests waited for is
   * gone. Requests sent after the new one's first hello reached this caller were published after it
   * subscribed (it announces itself only then), so they reached it, and it answers them: only those
   * sent before are told the id left.
   */
  private switchIncarnation(member: Member, incarnation: string): void {
    // The old process was unreachable (nobody on its direct channel), and nothing came from it
    // since: a request still waiting on the id waits because Redis counted room for it, and that
    // receiver is the new process. It answers, or the count settles the request without it
    // (`not-counted`).
    if ((member.silent && member.absentAs === 'unreachable') || member.revivedByCount) return;
    const seenAt = member.next?.incarnation === incarnation ? member.next.seenAt : ++this.signs;
    this.host.instanceGone(member.info.instanceId, 'left', seenAt);
  }

  private bindingsChanged(): void {
    this.requestBindings.invalidate();
    this.eventBindings.invalidate();
  }

  /**
   * The patterns of one kind that vouched members announce: a wildcard binding is published on once
   * an exchange vouches for an instance announcing it (a hello from an unknown instance asks a `who`
   * round at once), so forged hellos cannot make every request pay extra PUBLISHes.
   */
  private *announced(kind: 'patterns' | 'events'): Iterable<readonly string[]> {
    for (const member of this.members.values()) if (member.vouched) yield member.info[kind];
  }

  /** A mark for `stillMembers`: taken when a request is sent. */
  get removalMark(): number {
    return this.removals;
  }

  /**
   * `ids` without those no longer in the view (the same set when none left: no copy per request;
   * no look-up either when nobody was removed since `mark`).
   */
  stillMembers(ids: ReadonlySet<string>, mark: number): ReadonlySet<string> {
    if (mark === this.removals) return ids;
    let gone = false;
    for (const id of ids) if (!this.members.has(id)) gone = true;
    if (!gone) return ids;
    const present = new Set<string>();
    for (const id of ids) if (this.members.has(id)) present.add(id);
    return present;
  }

  /**
   * Those of `ids` currently taken for absent (silent or unreachable), with the reason: a request
   * does not wait for them, and names them.
   */
  silentAmong(ids: ReadonlySet<string> | undefined): ReadonlyMap<string, MissingReason> {
    if (ids === undefined || !this.liveness.anyAbsent) return NO_ABSENT;
    const absent = new Map<string, MissingReason>();
    for (const id of ids) {
      const member = this.members.get(id);
      if (member?.silent === true) absent.set(id, member.absentAs);
    }
    return absent;
  }

  /** One liveness round over the instances open requests have waited on (see `Liveness.check`). */
  check(waitedOn: Iterable<string>, lagMs = 0): void {
    this.liveness.check(waitedOn, lagMs);
  }

  /** Pings the silent ones among `ids` (a request is about to skip them), at most once a quarter each. */
  repingSilent(ids: Iterable<string>): void {
    this.liveness.repingSilent(ids);
  }

  private remove(instanceId: string, reason: MissingReason): void {
    const member = this.members.get(instanceId);
    if (member === undefined) return;
    this.members.delete(instanceId);
    this.removals++;
    this.liveness.forget(member);
    this.awaitedCache.clear();
    this.bindingsChanged();
    if (member.vouched) return this.host.instanceGone(instanceId, reason);
    // Nothing ever vouched for it: a forged hello must not make a request partial on its own.
    this.unvouchedCount--;
    this.host.instanceDismissed(instanceId);
  }
}

function bindsAny(patterns: ReadonlySet<string>, pattern: string, routes: readonly string[]): boolean {
  if (patterns.has(pattern)) return true;
  for (const route of routes) if (patterns.has(route)) return true;
  return false;
}
