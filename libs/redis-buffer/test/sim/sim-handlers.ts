import { Observable } from 'rxjs';
import type { Clock } from '../../src/core/clock.js';
import type { BufferReply } from '../../src/core/gather/reply.js';
import type { Behaviour } from './sim-plan.js';

/** What a handler sends: enough for the checker to tell whose reply it is and which one. */
export interface SimPayload {
  readonly from: string;
  readonly request: number;
  readonly k: number;
}

/** `until`: a request ends on the first error, or on a stream's second value. */
export function untilPredicate(reply: BufferReply<unknown>): boolean {
  return !reply.ok || (reply.data as SimPayload).k >= 1;
}

/** A plain handler acting out `behaviour`, on its process's clock. */
export function handlerFor(instanceId: string, behaviour: Behaviour, clock: Clock): (data: unknown) => unknown {
  return (data) => {
    const request = (data as { request: number }).request;
    const payload = (k: number): SimPayload => ({ from: instanceId, request, k });
    switch (behaviour.kind) {
      case 'value':
        if (behaviour.delay === 0) return payload(0);
        return new Promise((resolve) => clock.setTimer(() => resolve(payload(0)), behaviour.delay));
      case 'throw':
        if (behaviour.delay === 0) throw new Error(`${instanceId} failed`);
        return new Promise((_, reject) => clock.setTimer(() => reject(new Error(`${instanceId} failed`)), behaviour.delay));
      case 'stream':
        return new Observable<SimPayload>((subscriber) => {
          let k = 0;
          const emit = (): void => {
            subscriber.next(payload(k++));
            if (k >= behaviour.count) subscriber.complete();
            else timer = clock.setTimer(emit, behaviour.gap);
          };
          let timer = clock.setTimer(emit, behaviour.delay);
          return () => clock.clearTimer(timer);
        });
    }
  };
}
