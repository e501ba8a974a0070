import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import type { Slots } from '../slots.js';

/**
 * Waiting with a bound: every "this, or give up after so many ms" of the library goes through
 * these, so each clears its timer (a timer left armed would hold the process open) and none leaves
 * a rejection unhandled.
 */

/**
 * Settles as `work` does, or rejects after `ms` with the error `timedOut` returns (called when the
 * time is up, so it may also stop whatever `work` waits for), whichever comes first.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, timedOut: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  // When the time wins, `work` may still reject later: not an unhandled rejection.
  work.catch(() => undefined);
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/**
 * Waits for `work` to settle, at most `ms` by `clock`; never rejects (its outcome does not matter to
 * the caller). The clock is a seam so that a simulated responder's shutdown waits run on virtual time.
 */
export function within(work: Promise<unknown>, ms: number, clock: Clock = systemClock): Promise<void> {
  let timer: TimerHandle | undefined;
  const elapsed = new Promise<void>((resolve) => (timer = clock.setTimer(resolve, ms)));
  const settled = work.then(
    () => undefined,
    () => undefined,
  );
  return Promise.race([settled, elapsed]).finally(() => clock.clearTimer(timer));
}

/**
 * Waits for a command, or for a close of its connection, whichever comes first: the close calls
 * the function registered in `inFlight` (while the command waits) with the error to settle it with.
 * `Slots`, not a Set: what a dropped Set table still points at would outlive the young generation.
 * For commands ioredis neither resends nor settles when their connection closes.
 */
export async function settledByClose<T>(inFlight: Slots<(error: Error) => void> | undefined, sent: Promise<T>): Promise<T> {
  let cut!: (error: Error) => void;
  const closed = new Promise<never>((_, reject) => (cut = reject));
  const slot = inFlight?.add(cut);
  // When the close wins the race, ioredis still rejects the command later: not an unhandled rejection.
  sent.catch(() => undefined);
  try {
    return await Promise.race([sent, closed]);
  } finally {
    if (slot !== undefined) inFlight?.delete(slot);
  }
}

/**
 * A query a start-up waits on (`command`, such as PUBSUB NUMSUB): settled by a close of its
 * connection (`settledByClose`), and failed with `ConnectionLostError` after `connectTimeout` when
 * the connection stays open and answers nothing.
 */
export function answeredOrCut<T>(inFlight: Slots<(error: Error) => void> | undefined, sent: Promise<T>, command: string, connectTimeout: number): Promise<T> {
  return withTimeout(settledByClose(inFlight, sent), connectTimeout, () => new ConnectionLostError(`no answer to ${command} within connectTimeout (${connectTimeout} ms)`));
}
