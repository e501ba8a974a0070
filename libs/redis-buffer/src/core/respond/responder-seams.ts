import type { RedisBus } from '../bus/redis-bus.js';
import type { Clock } from '../clock.js';
import type { BufferLogger } from '../logger.js';
import type { MessageContext } from './message-context.js';

/**
 * A request or event handler: given the payload and the message's context, it returns a value, a
 * Promise, or an Observable (every value it emits is a reply; the instance is done when it completes).
 */
export type ResponderHandler<C = MessageContext> = (data: unknown, context: C) => unknown;

/**
 * What runs around each handler (Nest's processing hooks, for one): `run` calls `handler` inside it,
 * giving it the end hook to call once the handler's stream has ended.
 */
export interface RunAround<C> {
  /** Whether anything runs around handlers now; while false, a request's handler is called bare. */
  active(): boolean;
  run(context: C, handler: (runEnd: () => void) => Promise<void>): unknown;
}

/** The seams of a `Responder`: what a test, a simulation or the Nest layer puts in place of the defaults. */
export interface ResponderSeams<C = MessageContext> {
  /** The Redis seam. @default the bus the options ask for (`createBus`) */
  readonly bus?: RedisBus;
  /** Time and timers. @default the system clock */
  readonly clock?: Clock;
  /** @default `console` */
  readonly logger?: BufferLogger;
  /** Makes the context a handler is given from the message's. @default the `MessageContext` itself */
  readonly context?: (message: MessageContext) => C;
  /** What runs around each handler. @default nothing */
  readonly runAround?: RunAround<C>;
}

/** Every key of `ResponderSeams`: anything else is a typo (checked at compile time to stay complete). */
export const RESPONDER_SEAM_KEYS = { bus: true, clock: true, logger: true, context: true, runAround: true } as const satisfies Record<keyof ResponderSeams, true>;

/** Where a responder is in its life: `starting` until `listen()` has subscribed and announced it. */
export type ResponderState = 'starting' | 'listening' | 'draining' | 'closed';

