/**
 * One instance's progress on a request, as one number: the last sequence number seen, negated
 * (as `-(seq + 1)`) once the instance is done. A number per instance rather than an object.
 */
export type Progress = number;

export const isDone = (progress: Progress): boolean => progress < 0;

/** How many instances besides the first are tracked in an array before a Map. */
const OTHERS_IN_ARRAY = 8;

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
  // a Map and its lookups are as fast at that size; past that, a Map.
  private others: Array<string | Progress> | Map<string, Progress> | undefined;

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
    if (others instanceof Map) return others.get(instanceId);
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
    if (others instanceof Map) {
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
    if (others instanceof Map) {
      for (const [id, progress] of others) if (!isDone(progress)) yield id;
      return;
    }
    for (let index = 0; index < others.length; index += 2) if (!isDone(others[index + 1] as Progress)) yield others[index] as string;
  }
}
