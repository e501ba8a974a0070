import { InstanceProgress } from './instance-progress.js';
import type { MissingReason } from './reply.js';

/**
 * Whom one request waits for: the instances the membership view knows received it (`awaited`), and
 * how many of them are settled (finished, taken for gone, or dismissed), kept as replies come so
 * that "every known instance settled" is O(1). A base class of `Gatherer`, like `InstanceProgress`
 * under it, so that a request in flight stays one object (memory per request in flight).
 */
export class AwaitedInstances extends InstanceProgress {
  protected awaited: ReadonlySet<string> | undefined;
  private settledAwaited = 0;
  // Awaited instances taken for gone (named in the result) or dismissed (Redis did not count them
  // and nothing vouches for them, as after an unsolicited hello: not waited for, not named). Made on demand.
  private apart: { gone?: Map<string, MissingReason>; dismissed?: Set<string> } | undefined;

  /** Those taken for gone, with why. */
  protected get gone(): ReadonlyMap<string, MissingReason> | undefined {
    return this.apart?.gone;
  }

  /** Waits for `awaited` from now on, counting those that finished already. */
  protected takeAwaited(awaited: ReadonlySet<string>): void {
    this.awaited = awaited;
    this.settledAwaited = 0;
    if (this.anyReplied) for (const id of awaited) if (this.isDone(id)) this.settledAwaited++;
  }

  /** Takes an awaited instance not settled yet for gone; false when it is not one. */
  protected markGone(instanceId: string, reason: MissingReason): boolean {
    if (this.awaited === undefined || !this.awaited.has(instanceId) || this.isSettled(instanceId)) return false;
    ((this.apart ??= {}).gone ??= new Map()).set(instanceId, reason);
    this.settledAwaited++;
    return true;
  }

  /** Stops waiting for an awaited instance without naming it. */
  protected dismiss(instanceId: string): void {
    ((this.apart ??= {}).dismissed ??= new Set()).add(instanceId);
    this.settledAwaited++;
  }

  /** `instanceId` finished: it settles now, unless it had been taken for gone (it is not, after all) or dismissed. */
  protected settleFinished(instanceId: string): void {
    const apart = this.apart;
    if (apart?.gone?.delete(instanceId) !== true && apart?.dismissed?.has(instanceId) !== true && this.awaited?.has(instanceId) === true) this.settledAwaited++;
  }

  isSettled(instanceId: string): boolean {
    return this.isDone(instanceId) || this.apart?.gone?.has(instanceId) === true || this.apart?.dismissed?.has(instanceId) === true;
  }

  /** Whether there is an awaited set and every instance in it is settled. */
  protected allAwaitedSettled(): boolean {
    return this.awaited !== undefined && this.awaited.size === this.settledAwaited;
  }

  /** Whether there is an awaited set and every instance in it finished (none taken for gone or dismissed). */
  protected allAwaitedFinished(): boolean {
    return this.apart === undefined && this.allAwaitedSettled();
  }

  /** The awaited instances not settled yet. */
  protected unsettled(): string[] {
    const waiting: string[] = [];
    for (const id of this.awaited ?? []) if (!this.isSettled(id)) waiting.push(id);
    return waiting;
  }
}
