import type { GatherResult } from '../../src/core/gather/reply.js';
import type { RequestPlan } from './sim-plan.js';

/** A span of virtual time; `to` is Infinity while it lasts. */
export interface Interval {
  readonly from: number;
  to: number;
  readonly what: string;
}

/** One process of one instance id: a restart makes a new incarnation. */
export interface IncarnationRecord {
  readonly id: string;
  readonly process: string;
  readonly number: number;
  readonly patterns: readonly string[];
  /** When `listen()` resolved: subscribed and announced. */
  listeningAt: number | undefined;
  /** When `close()` was called or the process was killed: from then on it is not required to answer. */
  leftAt: number | undefined;
  /** When it was gone for good: its `bye` reached Redis, `close()` resolved, or the process was killed. */
  goneAt: number | undefined;
  /** Why `listen()` failed, if it did. */
  startError: string | undefined;
}

/** What one caller's inbox received for one request, from one instance. */
export interface DeliveredReplies {
  seqs: number[];
  /** When the `done` reply reached the caller's process. */
  doneAt: number | undefined;
}

export interface RequestRecord {
  readonly plan: RequestPlan;
  requestId: string | undefined;
  startedAt: number | undefined;
  endedAt: number | undefined;
  result: GatherResult<unknown> | undefined;
  error: Error | undefined;
  /** Thrown by `request()` itself. */
  thrown: Error | undefined;
  /** Replies the sink saw, in order. */
  seen: number;
  /** The instances the caller's view held (not taken for silent) when the request ended. */
  knownAtEnd: readonly string[];
}

/** Everything the checker needs to know about what happened. */
export class SimRecord {
  readonly incarnations: IncarnationRecord[] = [];
  /** Per process name: when it could not do its part (paused, cut off, its connection down, its subscriptions lost). */
  readonly trouble = new Map<string, Interval[]>();
  /** When Redis itself answered nothing. */
  readonly redisTrouble: Interval[] = [];
  /**
   * Per request pattern: while its channel's slot moves with the count leaving out receivers it
   * still delivers to. Redis's count for a request there is wrong, and a caller cannot tell which
   * receivers it left out: one that answered first may be the uncounted one.
   */
  readonly countTrouble = new Map<string, Interval[]>();
  /** Per process: when it was paused (its timers late by that much). */
  readonly pauses = new Map<string, Interval[]>();
  readonly requests: RequestRecord[] = [];
  /** request id → instance id → what reached the caller. */
  readonly delivered = new Map<string, Map<string, DeliveredReplies>>();
  /** request id → the processes Redis queued the request for. */
  readonly receivers = new Map<string, readonly string[]>();
  readonly trace: string[] = [];

  troubleOf(process: string): Interval[] {
    let list = this.trouble.get(process);
    if (list === undefined) this.trouble.set(process, (list = []));
    return list;
  }

  /** Opens a trouble interval; returns it, to be closed by setting `to`. */
  troubleFrom(process: string, from: number, what: string): Interval {
    const interval: Interval = { from, to: Infinity, what };
    this.troubleOf(process).push(interval);
    return interval;
  }

  log(at: number, line: string): void {
    this.trace.push(`${(at - 1_000_000).toFixed(1).padStart(8)} ${line}`);
  }
}

/** Whether any interval of `list` overlaps [from, to]. */
export function overlaps(list: readonly Interval[] | undefined, from: number, to: number): Interval | undefined {
  return list?.find((interval) => interval.from <= to && interval.to >= from);
}

/** How much of [from, to] the intervals cover (summed; they may overlap, which only makes it larger). */
export function coverage(list: readonly Interval[] | undefined, from: number, to: number): number {
  let total = 0;
  for (const interval of list ?? []) total += Math.max(0, Math.min(to, interval.to) - Math.max(from, interval.from));
  return total;
}
