import { isObservable, type Subscription } from 'rxjs';
import type { BufferLogger } from '../logger.js';
import type { BufferTelemetry } from '../telemetry/telemetry.js';
import type { EventEnvelope } from '../wire/envelope.js';
import type { Work } from './active-work.js';

/** What every event run of one responder shares. */
export interface EventRunHost<C> {
  readonly telemetry: BufferTelemetry;
  readonly logger: BufferLogger;
  /** Runs `handler` inside whatever runs around handlers (Nest's processing hooks). */
  around(context: C, handler: (runEnd: () => void) => Promise<void>): Promise<void>;
  /** Told once the run has started (`token` stands for it). */
  start(token: Work): void;
  /** Told of its stream still open once subscribed. */
  track(token: Work, subscription: Subscription): void;
  /** Told once when the run is over. */
  done(token: Work): void;
}

/**
 * Runs one event's handler, bound to `binding` (its pattern, exact or wildcard): nobody waits for
 * an answer, so a failure is logged and recorded on the event's span; a handler's stream is
 * followed to its end (that is when the run is over).
 */
export function runEvent<C>(host: EventRunHost<C>, handler: (data: unknown, context: C) => unknown, binding: string, envelope: EventEnvelope, channel: string, context: C): void {
  const trace = host.telemetry.startProcess('event', envelope.pattern, binding, channel, envelope.id, envelope.from, envelope.headers);
  const token: Work = { startedAt: 0, workPrev: undefined, workNext: undefined, workSubscription: undefined, workListed: false };
  let failed: string | undefined;
  let settled = false;
  const settle = (): void => {
    if (settled) return;
    settled = true;
    host.telemetry.endProcess(trace, failed);
    host.done(token);
  };
  host.start(token);
  const fail = (error: unknown): void => {
    host.logger.error(`Event handler for "${envelope.pattern}" failed: ${(error as Error)?.message ?? String(error)}`);
    failed = (error as { code?: string } | null)?.code ?? 'error';
    settle();
  };
  host.telemetry
    .runInContext(trace, () =>
      host.around(context, async (runEnd) => {
        const result: unknown = await handler(envelope.data, context);
        if (!isObservable(result)) {
          runEnd();
          return settle();
        }
        const subscription = result.subscribe({ error: fail });
        subscription.add(() => {
          runEnd();
          settle();
        });
        if (!subscription.closed) host.track(token, subscription);
      }),
    )
    .catch(fail);
}
