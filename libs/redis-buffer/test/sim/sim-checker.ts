import { NoRespondersError } from '../../src/core/errors/no-responders.error.js';
import type { BufferReply } from '../../src/core/gather/reply.js';
import { callerProcess, handlerDuration, type SchedulePlan } from './sim-plan.js';
import { coverage, overlaps, type IncarnationRecord, type RequestRecord, type SimRecord } from './sim-record.js';
import { untilPredicate, type SimPayload } from './sim-handlers.js';

/** Virtual milliseconds a request may end past its timeout (timers have a 1 ms grain). */
export const DEADLINE_MARGIN_MS = 5;

export interface Violation {
  /** Which invariant, as a stable name (what a stress run groups failures by). */
  readonly invariant: string;
  readonly request: number | undefined;
  readonly message: string;
}

/** What the world looked like at the end of a run, beside its record. */
export interface EndState {
  readonly inFlight: readonly number[];
  readonly thrown: ReadonlyArray<{ at: number; owner: string; error: unknown }>;
  /** Handlers each live instance still runs. */
  readonly activeHandlers: ReadonlyArray<{ instance: string; active: number }>;
}

/**
 * The invariants of DESIGN.md section 3 (rules 3, 8, 11, 12), over one simulated run.
 *
 * Definitions, for a request R issued by caller C at `s` that ended at `e`:
 * - instance I *serves* R: R.to names I, or (no `to`) I handles R's pattern;
 * - I is *required* for R: it serves R, its `listen()` had resolved by `s` (subscribed, announced),
 *   and it was neither closed nor killed before `e`. Paused, cut off or robbed of its subscriptions,
 *   it is still required: the caller may not know why it is silent, but must say it did not hear it;
 * - I *finished* R: its `done` reply reached C's process by `e`;
 * - I is *untroubled* for R: nothing happened to I's process (pause, partition, connection down,
 *   subscriptions lost or moved), nor did an earlier process under its id die or leave, from
 *   `s - 2 × livenessTimeout` (how long a caller's view may still hold the past against it) to `e`; *all clear*: neither to I, nor to C, nor to Redis,
 *   nor to the count of R's channel (a slot move whose count leaves out receivers it delivers to);
 * - I is *on time* for R: its handler's duration plus four network hops (at the slowest latency of
 *   I's and C's connections) plus 10 ms fits in R's timeout, and in R's `stall` if it has one.
 *
 * Checked:
 * - `deadline`: R ended, by `s + timeout + 5 ms` plus the time C spent paused in between;
 * - `named` (never silently partial): completed by `all` or `stall`, every required instance that
 *   did not finish is in `missing`, or, if the caller's view does not hold it at the end, is among
 *   the counted receivers the result reports as `observers` (an id never heard of cannot be named,
 *   and a counted receiver that never spoke looks the same whether it is an observer or such an
 *   instance: the result says one was there); one neither held by the view nor counted by Redis
 *   (its subscriptions lost before the caller ever heard of it) is invisible to that caller, as the
 *   invariant says: whole means every instance the caller knows and every receiver Redis counted;
 *   completed by `timeout`, every one of them that the caller's view held when it ended (a timeout
 *   claims nothing whole);
 * - `noResponders`: a NoRespondersError only when no required instance is in the caller's view
 *   (Redis counted nobody: one the caller never heard of is invisible to it, as for `named`);
 * - `blame`: an untroubled required instance is never named `silent` or `left`;
 * - `left`: no instance is named `left` while the process behind its id was there from `s` to `e`
 *   (listening by `s`; neither killed nor done closing by `e`: a draining instance has not left);
 * - `onTime`: an all-clear, on-time required instance is never in `missing`;
 * - `prompt`: R never ends by `timeout` or `stall` once the `done` reply of every process Redis
 *   queued R for has reached C, and so has Redis's count (rule 1: it completes as soon as the
 *   answer is known; without the count, a subscriber that is not an instance the view knows, or
 *   one whose hello has not arrived, cannot be ruled out, so the answer is not known);
 * - `failure`: R fails (not `NoRespondersError`) only if C's connection or Redis was in trouble;
 * - `once`: each (instance, seq) once in the result, never more replies than reached C, `finished`
 *   never above the instances whose `done` reached C, every payload the instance's own;
 * - `quorum` / `until`: a result completed by them satisfies them;
 * - at the end: no request open in any caller (`pending` empty), no handler still running on any
 *   instance (a stream is stopped at its deadline), no exception thrown into an event loop.
 */
export function checkRequest(plan: SchedulePlan, record: SimRecord, request: RequestRecord): Violation[] {
  const violations: Violation[] = [];
  const lookback = 2 * plan.livenessTimeout;
  const latencyTop = (process: string): number => plan.latency.get(process)?.[1] ?? 3;
  const add = (invariant: string, message: string): void => void violations.push({ invariant, request: request.plan.index, message });
  const { plan: rp } = request;
  if (request.thrown !== undefined) {
    add('failure', `request() threw ${request.thrown.name}: ${request.thrown.message}`);
    return violations;
  }
  if (request.startedAt === undefined) return violations;
  const s = request.startedAt;
  if (request.endedAt === undefined) {
    add('deadline', `never ended (issued at ${s - 1_000_000}, timeout ${rp.timeout})`);
    return violations;
  }
  {
    const e = request.endedAt;
    const caller = callerProcess(rp.caller);
    const allowed = rp.timeout + DEADLINE_MARGIN_MS + coverage(record.pauses.get(caller), s, e);
    if (e - s > allowed) add('deadline', `ended ${e - s} ms after it was issued; timeout ${rp.timeout}, allowed ${allowed}`);

    const delivered = record.delivered.get(request.requestId ?? '');
    const finished = (id: string): boolean => {
      const at = delivered?.get(id)?.doneAt;
      return at !== undefined && at <= e;
    };
    const serves = (incarnation: IncarnationRecord): boolean => (rp.to !== undefined ? incarnation.id === rp.to : incarnation.patterns.includes(rp.pattern));
    const required = record.incarnations.filter(
      (incarnation) => serves(incarnation) && incarnation.listeningAt !== undefined && incarnation.listeningAt <= s && (incarnation.leftAt === undefined || incarnation.leftAt > e),
    );
    // A caller names an id, not an incarnation: an earlier process under the same id that died or
    // left within the lookback is trouble of that id (its restart's hello may still be on its way).
    const predecessorGone = (incarnation: IncarnationRecord): boolean =>
      record.incarnations.some((other) => other !== incarnation && other.id === incarnation.id && other.number < incarnation.number && (other.goneAt ?? other.leftAt ?? -Infinity) >= s - lookback);
    const untroubled = (incarnation: IncarnationRecord): boolean => overlaps(record.trouble.get(incarnation.process), s - lookback, e) === undefined && !predecessorGone(incarnation);
    // A count that leaves out receivers it delivers to (a slot moving) makes the request's count
    // wrong: whoever finished first may be the uncounted one, and a caller that waits for every
    // instance it knows is as wrong in the twin case where the one not finished was never a
    // receiver (then `prompt` fails). Neither is all clear.
    const countClear = rp.to !== undefined || overlaps(record.countTrouble.get(rp.pattern), s - lookback, e) === undefined;
    const allClear = (incarnation: IncarnationRecord): boolean =>
      untroubled(incarnation) && countClear && overlaps(record.trouble.get(caller), s - lookback, e) === undefined && overlaps(record.redisTrouble, s - lookback, e) === undefined;
    const onTime = (incarnation: IncarnationRecord): boolean => {
      const behaviour = plan.instances.find((instance) => instance.id === incarnation.id)!.behaviour;
      const slack = 2 * latencyTop(caller) + 2 * latencyTop(incarnation.process) + 10;
      const duration = handlerDuration(behaviour);
      return duration + slack < rp.timeout && (rp.stall === undefined || duration + slack < rp.stall);
    };

    const error = request.error;
    if (error !== undefined) {
      if (error instanceof NoRespondersError) {
        // Redis counted nobody, so only an instance the caller's view held can be held against it.
        const known = required.filter((incarnation) => request.knownAtEnd.includes(incarnation.id));
        if (known.length > 0) add('noResponders', `NoRespondersError while ${known.map(describe).join(', ')} served it (listening, not leaving, known to the caller)`);
      } else if (overlaps(record.trouble.get(caller), s, e) === undefined && overlaps(record.redisTrouble, s, e) === undefined) {
        add('failure', `failed with ${error.name} (${error.message}) though neither the caller's connection nor Redis had trouble`);
      }
    }
    const result = request.result;
    if (result === undefined) return violations;

    // One reply per instance and sequence number, each one that reached the caller, each the instance's own.
    const all: Array<BufferReply<unknown>> = [...result.replies, ...result.errors];
    const seen = new Set<string>();
    for (const reply of all) {
      const key = `${reply.instanceId}/${reply.seq}`;
      if (seen.has(key)) add('once', `reply ${key} counted twice`);
      seen.add(key);
      if (!(delivered?.get(reply.instanceId)?.seqs.includes(reply.seq) ?? false)) add('once', `reply ${key} in the result never reached the caller`);
      if (reply.ok) {
        const data = reply.data as SimPayload;
        if (data.from !== reply.instanceId || data.request !== rp.index) add('once', `reply ${key} carries ${JSON.stringify(data)}: another instance's or request's`);
      }
    }
    if (request.seen !== all.length) add('once', `the caller was handed ${request.seen} replies one by one, the result holds ${all.length}`);
    const doneBy = [...(delivered ?? new Map()).values()].filter((replies) => replies.doneAt !== undefined && replies.doneAt <= e).length;
    if (result.finished > doneBy) add('once', `finished=${result.finished} but only ${doneBy} instances' done replies reached the caller`);
    if (error !== undefined) return violations;

    const by = result.completedBy;
    const receivers = record.receivers.get(request.requestId ?? '');
    if ((by === 'timeout' || by === 'stall') && receivers !== undefined && receivers.length > 0 && result.expected !== undefined) {
      const last = Math.max(...receivers.map((receiver) => delivered?.get(receiver)?.doneAt ?? Infinity));
      if (last < e - 1) add('prompt', `completedBy=${by} at ${(e - s).toFixed(1)} ms though every receiver (${receivers.join(',')}) had finished by ${(last - s).toFixed(1)} ms`);
    }
    if (by === 'quorum' && result.finished < (rp.quorum ?? 1)) add('quorum', `completed by quorum ${rp.quorum} with ${result.finished} finished`);
    if (by === 'until' && !all.some(untilPredicate)) add('until', 'completed by until with no reply that matches it');
    if (by !== 'all' && by !== 'stall' && by !== 'timeout') return violations;
    const missing = new Set(result.missing);
    for (const [id, reason] of Object.entries(result.missingReasons)) {
      if (reason !== 'left') continue;
      const there = record.incarnations.find((incarnation) => incarnation.id === id && incarnation.listeningAt !== undefined && incarnation.listeningAt <= s && (incarnation.goneAt === undefined || incarnation.goneAt > e));
      if (there !== undefined) add('left', `${describe(there)} named "left" though it was there throughout${there.leftAt !== undefined && there.leftAt <= e ? ' (draining)' : ''}`);
    }
    for (const incarnation of required) {
      const reason = result.missingReasons[incarnation.id];
      const counted = receivers?.includes(incarnation.id) === true;
      const couldName = request.knownAtEnd.includes(incarnation.id) || (by !== 'timeout' && counted && result.observers === 0);
      if (!finished(incarnation.id) && !missing.has(incarnation.id) && couldName) {
        add('named', `completedBy=${by} missing=${JSON.stringify(result.missingReasons)}: required ${describe(incarnation)} did not finish and is not named (expected=${result.expected}, finished=${result.finished}, observers=${result.observers})`);
      }
      if ((reason === 'silent' || reason === 'unreachable' || reason === 'left') && untroubled(incarnation)) {
        add('blame', `${describe(incarnation)} named "${reason}" though nothing happened to it`);
      } else if (missing.has(incarnation.id) && allClear(incarnation) && onTime(incarnation)) {
        add('onTime', `${describe(incarnation)} named "${reason}" though it, the caller and Redis were all clear and its handler fits in the timeout`);
      }
    }
  }
  return violations;
}

/** What must hold once the run is over: every request ended, nothing left behind, nothing thrown. */
export function checkEnd(plan: SchedulePlan, record: SimRecord, end: EndState): Violation[] {
  const violations: Violation[] = [];
  for (const request of record.requests) {
    if (request.startedAt !== undefined && request.endedAt === undefined) violations.push(...checkRequest(plan, record, request));
    // Issued never: its caller's process was paused or dead until the end.
    if (request.startedAt === undefined) violations.push({ invariant: 'harness', request: request.plan.index, message: 'never issued (its caller never ran again)' });
  }
  end.inFlight.forEach((count, index) => {
    if (count > 0) violations.push({ invariant: 'leak', request: undefined, message: `${callerProcess(index)} still holds ${count} requests at the end` });
  });
  for (const { instance, active } of end.activeHandlers) {
    if (active > 0) violations.push({ invariant: 'leak', request: undefined, message: `${instance} still runs ${active} handlers, seconds after every deadline` });
  }
  for (const thrown of end.thrown) {
    violations.push({ invariant: 'thrown', request: undefined, message: `${thrown.owner} threw into its event loop at ${thrown.at - 1_000_000}: ${(thrown.error as Error)?.stack ?? String(thrown.error)}` });
  }
  return violations;
}

function describe(incarnation: IncarnationRecord): string {
  return `${incarnation.id}#${incarnation.number}`;
}
