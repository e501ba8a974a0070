import type { Clock, TimerHandle } from '../clock.js';

/** Waits for `promise` at most `ms` by `clock`, and never rejects: for the steps of a shutdown. */
export function withinMs(promise: Promise<unknown>, ms: number, clock: Clock): Promise<void> {
  let timer: TimerHandle | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = clock.setTimer(resolve, ms)));
  return Promise.race([promise.then(() => undefined, () => undefined), elapsed]).finally(() => clock.clearTimer(timer));
}
