/**
 * One instance's progress on a request, as one number: the last sequence number seen, negated
 * (as `-(seq + 1)`) once the instance is done. A number per instance rather than an object.
 */
export type Progress = number;

export const isDone = (progress: Progress): boolean => progress < 0;

/** How many instances besides the first are tracked in an array before a Map. */
const OTHERS_IN_ARRAY = 8;

/** A position of a `Roster` no instance has been heard at. Never a progress: sequence numbers are safe integers. */
const NOT_HEARD = Number.POSITIVE_INFINITY;

// The position of each member of a set, made once per set: the membership view gives every request
// the same set object while the membership it describes is unchanged.
const positionsBySet = new WeakMap<ReadonlySet<string>, Map<string, number>>();

function positionsOf(set: ReadonlySet<string>): Map<string, number> {
  let positions = positionsBySet.get(set);
  if (positions === undefined) {
    positions = new Map();
    for (const id of set) positions.set(id, positions.size);
    positionsBySet.set(set, positions);
  }
  return positions;
}

/**
 * The progress of a request sent to many instances, by their position in the set it was sent to:
 * one array of numbers per request, made once, where a Map would grow entry by entry and be copied
 * by every young-generation GC the request lives through. Instances outside the set (an observer,
 * one that joined since) go to a Map of their own.
 */
class Roster {
  private readonly progress: Progress[];
  private extra: Map<string, Progress> | undefined;

  constructor(private readonly positions: Map<string, number>) {
    this.progress = new Array<Progress>(positions.size).fill(NOT_HEARD);
  }

  get(instanceId: string): Progress | undefined {
    const position = this.positions.get(instanceId);
    if (position === undefined) return this.extra?.get(instanceId);
    const progress = this.progress[position]!;
    return progress === NOT_HEARD ? undefined : progress;
  }

  set(instanceId: string, progress: Progress): void {
    const position = this.positions.get(instanceId);
    if (position === undefined) (this.extra ??= new Map()).set(instanceId, progress);
    else this.progress[position] = progress;
  }

  *startedUnfinished(): Iterable<string> {
    for (const [id, position] of this.positions) {
      const progress = this.progress[position]!;
      if (progress !== NOT_HEARD && !isDone(progress)) yield id;
    }
    for (const [id, progress] of this.extra ?? []) if (!isDone(progress)) yield id;
  }

  anyStartedUnfinished(): boolean {
    for (const progress of this.progress) if (progress !== NOT_HEARD && !isDone(progress)) return true;
    for (const progress of this.extra?.values() ?? []) if (!isDone(progress)) return true;
    return false;
  }
}

/**
 * Each replying instance's progress on one request. A base class of `Gatherer` rather than an
 * object it holds, so that a request in flight is one object (memory per request in flight).
 *
 * Redis keeps one publisher's messages in order, so anything at or below an instance's last
 * sequence number is a duplicate. The first instance to reply is kept in its own fields and the
 * others in an array or Map made on demand: most requests in flight hold neither.
 */
export class InstanceProgress {
  private firstFrom: string | undefined;
  private firstProgress: Progress = 0;
  // Up to OTHERS_IN_ARRAY instances, as [id, progress, id, progress…]: a small array costs less than
  // a Map and its lookups are as fast at that size; past that, a Map. A request sent to more
  // instances than that keeps them in a Roster from the start (`trackAmong`).
  private others: Array<string | Progress> | Map<string, Progress> | Roster | undefined;

  /**
   * The request goes to `instances`: with more of them than the array holds, and before any
   * reply, their progress is kept by position in that set (a `Roster`).
   */
  protected trackAmong(instances: ReadonlySet<string>): void {
    if (instances.size > OTHERS_IN_ARRAY + 1 && this.firstFrom === undefined && this.others === undefined) this.others = new Roster(positionsOf(instances));
  }

  /** Whether any instance has replied yet. */
  protected get anyReplied(): boolean {
    return this.firstFrom !== undefined;
  }

  protected isDone(instanceId: string): boolean {
    const progress = this.progressOf(instanceId);
    return progress !== undefined && isDone(progress);
  }

  protected progressOf(instanceId: string): Progress | undefined {
    if (this.firstFrom === instanceId) return this.firstProgress;
    const others = this.others;
    if (others === undefined) return undefined;
    if (others instanceof Roster || others instanceof Map) return others.get(instanceId);
    for (let index = 0; index < others.length; index += 2) if (others[index] === instanceId) return others[index + 1] as Progress;
    return undefined;
  }

  protected setProgress(instanceId: string, progress: Progress): void {
    if (this.firstFrom === undefined || this.firstFrom === instanceId) {
      this.firstFrom = instanceId;
      this.firstProgress = progress;
      return;
    }
    const others = (this.others ??= []);
    if (others instanceof Roster || others instanceof Map) {
      others.set(instanceId, progress);
      return;
    }
    for (let index = 0; index < others.length; index += 2) {
      if (others[index] === instanceId) {
        others[index + 1] = progress;
        return;
      }
    }
    if (others.length < OTHERS_IN_ARRAY * 2) {
      others.push(instanceId, progress);
      return;
    }
    const map = new Map<string, Progress>();
    for (let index = 0; index < others.length; index += 2) map.set(others[index] as string, others[index + 1] as Progress);
    map.set(instanceId, progress);
    this.others = map;
  }

  /** Whether an instance started answering and is not done (`startedUnfinished` without walking it). */
  protected anyStartedUnfinished(): boolean {
    if (this.firstFrom !== undefined && !isDone(this.firstProgress)) return true;
    const others = this.others;
    if (others === undefined) return false;
    if (others instanceof Roster) return others.anyStartedUnfinished();
    if (others instanceof Map) {
      for (const progress of others.values()) if (!isDone(progress)) return true;
      return false;
    }
    for (let index = 1; index < others.length; index += 2) if (!isDone(others[index] as Progress)) return true;
    return false;
  }

  /** The instances that started answering and are not done, first replier first. */
  protected *startedUnfinished(): Iterable<string> {
    if (this.firstFrom !== undefined && !isDone(this.firstProgress)) yield this.firstFrom;
    const others = this.others;
    if (others === undefined) return;
    if (others instanceof Roster) return yield* others.startedUnfinished();
    if (others instanceof Map) {
      for (const [id, progress] of others) if (!isDone(progress)) yield id;
      return;
    }
    for (let index = 0; index < others.length; index += 2) if (!isDone(others[index + 1] as Progress)) yield others[index] as string;
  }
}
