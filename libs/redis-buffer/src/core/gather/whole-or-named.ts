import type { CompletedBy, MissingReason, RedisAnswer } from './reply.js';

/** What a request knows, at completion, about who did not finish. */
export interface Unfinished {
  readonly completedBy: CompletedBy;
  readonly redis: RedisAnswer;
  /** Redis's count of receivers; `undefined` when it never answered the PUBLISH. */
  readonly expected: number | undefined;
  /** How many instances finished. */
  readonly finished: number;
  /** Instances found gone (silent, left…) while the request was open, with the reason. */
  readonly gone: ReadonlyMap<string, MissingReason> | undefined;
  /** Members the view learnt of between sending and Redis's count (see `Gatherer.expect`). */
  readonly newcomers: ReadonlySet<string> | undefined;
  /** Whom the caller knew serves the pattern: the awaited set, or the view's best knowledge. */
  readonly known: ReadonlySet<string> | undefined;
  /** Instances that started answering and are not done. */
  readonly startedUnfinished: Iterable<string>;
  /** Tells, per instance, whether it finished or was accounted for, and whether an exchange vouches for it. */
  readonly judge: InstanceJudge;
}

export interface InstanceJudge {
  isSettled(instanceId: string): boolean;
  isVouched(instanceId: string): boolean;
  /**
   * The members the view holds now that serve the request (`undefined` when the request waits on
   * no awaited set): those beyond `known` announced themselves after Redis's count. Asked only when
   * the count leaves room for a receiver nobody named.
   */
  servingNow(): ReadonlySet<string> | undefined;
}

/** No instance named. */
export const NO_REASONS: Readonly<Record<string, MissingReason>> = Object.freeze({});

/**
 * Who did not finish, and why: where the whole-or-named invariant is kept. `quorum` and `until`
 * end by the caller's rule and name nobody; every other result names each instance known to serve
 * the pattern that did not finish, and each instance that started answering and did not finish.
 */
export function nameMissing(request: Unfinished): { missing: string[]; missingReasons: Readonly<Record<string, MissingReason>> } {
  const { completedBy, redis, expected, known, newcomers } = request;
  if (completedBy === 'quorum' || completedBy === 'until') return { missing: [], missingReasons: NO_REASONS };
  const reasons: Record<string, MissingReason> = {};
  const fallback: MissingReason = redis === 'unanswered' ? 'redis-unanswered' : completedBy === 'stall' ? 'stall' : completedBy === 'all' ? 'not-counted' : 'timeout';
  for (const [id, reason] of request.gone ?? []) reasons[id] = reason;
  // A member nothing vouched for (an unsolicited hello) is never named: it cannot make a result partial.
  for (const id of known ?? []) if (!request.judge.isSettled(id) && request.judge.isVouched(id) && newcomers?.has(id) !== true) reasons[id] = fallback;
  // Instances that started answering but never finished, whether or not the view knew them.
  for (const id of request.startedUnfinished) if (reasons[id] === undefined) reasons[id] = fallback;
  // Redis counted more receivers than finished or are named: a member only heard of (its hello
  // came unasked, and a `who` round it did not answer could not vouch for it: frozen, say) or one
  // that said hello while the request was on its way is the likeliest of them, and is named, as
  // many as the count leaves room for. A forged hello alone never is: it takes a counted receiver
  // that did not answer.
  if (expected !== undefined && known !== undefined) {
    // One named unreachable had nobody on its direct channel: it takes no room in the count.
    let uncounted = expected - request.finished;
    for (const reason of Object.values(reasons)) if (reason !== 'unreachable') uncounted--;
    for (const id of known) {
      if (uncounted <= 0) break;
      if (request.judge.isSettled(id) || reasons[id] !== undefined) continue;
      reasons[id] = fallback;
      uncounted--;
    }
    // Then one that announced itself only after the count (it froze between subscribing and its
    // hello, say): a counted receiver that did not answer is more likely it than an observer.
    // Vouched ones first; the count bounds how many are named either way.
    const serving = uncounted > 0 ? request.judge.servingNow() : undefined;
    for (const vouched of [true, false]) {
      for (const id of serving ?? []) {
        if (uncounted <= 0) break;
        if (known.has(id) || request.judge.isVouched(id) !== vouched || request.judge.isSettled(id) || reasons[id] !== undefined) continue;
        reasons[id] = 'joining';
        uncounted--;
      }
    }
  }
  const missing = Object.keys(reasons);
  return missing.length === 0 ? { missing, missingReasons: NO_REASONS } : { missing, missingReasons: reasons };
}

/**
 * The absent instances (silent, unreachable) a request names at once when it learns whom it
 * awaits. When Redis counted more receivers than the awaited instances that are not absent, an
 * unreachable one may be subscribed again (reconnected, its hello on its way): it is waited for,
 * and its next ping tells (a count of 0 names it).
 */
export function* namedAtOnce(expected: number | undefined, awaited: ReadonlySet<string>, absent: ReadonlyMap<string, MissingReason>): Iterable<[string, MissingReason]> {
  const roomForAbsent = (expected ?? 0) > awaited.size - absent.size;
  for (const entry of absent) if (entry[1] !== 'unreachable' || !roomForAbsent) yield entry;
}

/**
 * Counted receivers that are neither finished nor named: not instances this caller knows. One named
 * unreachable had nobody on its direct channel: it was not among them.
 */
export function countObservers(expected: number | undefined, finished: number, missingReasons: Readonly<Record<string, MissingReason>>): number {
  if (expected === undefined) return 0;
  let namedReceivers = 0;
  for (const reason of Object.values(missingReasons)) if (reason !== 'unreachable') namedReceivers++;
  return Math.max(0, expected - finished - namedReceivers);
}

/** `a` with the members of `b` it lacks (`a` itself when none). */
export function withAll(a: ReadonlySet<string>, b: ReadonlySet<string> | undefined): ReadonlySet<string> {
  if (b === undefined) return a;
  for (const id of b) if (!a.has(id)) return new Set([...a, ...b]);
  return a;
}
