import type { Clock } from '../clock.js';
import { BufferErrorCode } from '../errors/buffer.error.js';
import type { RequestEnvelope } from '../wire/envelope.js';
import type { ConcurrencyLimiter } from './concurrency-limiter.js';
import type { CutOffWatch } from './cut-off-watch.js';
import type { HandlerInvoker } from './handler-invoker.js';
import type { InboundRoutes, RequestRoute } from './inbound-routes.js';
import type { Refusals } from './refusals.js';
import type { ResponderStats } from './responder-stats.js';

/** What admission reads of its responder. */
export interface AdmissionHost<C> {
  readonly instanceId: string;
  readonly directChannel: string;
  readonly clock: Clock;
  readonly stats: ResponderStats;
  readonly routes: InboundRoutes<C>;
  readonly limiter: ConcurrencyLimiter;
  readonly refusals: Refusals;
  readonly invoker: HandlerInvoker<C>;
  readonly cutOff: CutOffWatch;
  /** Taking new requests (not starting, draining or closed). */
  listening(): boolean;
  /** The shutdown drain ran out: what is still queued is refused. */
  stopping(): boolean;
}

/**
 * Whether a request that reached this instance runs, and when: it must be answerable, not stale
 * after a cut from Redis, routed, not a direct request while shutting down, given a slot (or
 * queued, else `BUFFER_OVERLOADED`), still within its deadline when its turn comes, and handled
 * here. Every request it does not run is refused, except those nobody waits for any more.
 */
export class RequestAdmission<C> {
  constructor(private readonly host: AdmissionHost<C>) {}

  /** `receivedAt`: this host's clock when the Redis message carrying the request arrived. */
  arrived(channel: string, envelope: RequestEnvelope, receivedAt: number): void {
    const { host } = this;
    if (!host.refusals.answerable(envelope.replyTo, undefined)) return;
    // After a cut from Redis, what waited in the network past its ttl is dead work: its caller
    // stopped waiting long ago (see `CutOffWatch`).
    if (envelope.sent !== undefined && host.cutOff.waitedPast(envelope.from, receivedAt - envelope.sent, envelope.ttl)) {
      host.stats.waitedPast++;
      host.stats.expired++;
      return;
    }
    // The caller's remaining time, counted on this host's clock from arrival: no clock agreement needed.
    const deadline = envelope.ttl !== undefined ? receivedAt + envelope.ttl : envelope.deadline!;
    const route = host.routes.request(channel, envelope, deadline - receivedAt);
    if (route === false) return;
    if (!host.listening() && channel === host.directChannel) {
      return host.refusals.refuse(envelope, BufferErrorCode.ShuttingDown, `Instance "${host.instanceId}" is shutting down; ask another instance.`);
    }
    // A free slot runs the request at once, with no task closure (the common case), and no second
    // clock read: the turn that received the message runs it.
    if (host.limiter.hasRoom) this.run(envelope, channel, deadline, receivedAt, route);
    else if (!host.limiter.submit(() => this.run(envelope, channel, deadline, host.clock.now(), route))) host.refusals.overloaded(envelope);
  }

  /** `route` is this instance's route for the request's pattern, looked up on arrival. */
  private run(envelope: RequestEnvelope, channel: string, deadline: number, now: number, route: RequestRoute<C> | undefined): void {
    const { host } = this;
    if (host.stopping()) return host.refusals.refuse(envelope, BufferErrorCode.ShuttingDown, `Instance "${host.instanceId}" shut down before it could run the request.`);
    if (now > deadline) {
      // The caller is about to stop listening: say so rather than do dead work, or stay silent.
      host.stats.expired++;
      return host.refusals.refuse(envelope, BufferErrorCode.Expired, `The request reached instance "${host.instanceId}" (or waited there) past its deadline.`);
    }
    if (route === undefined) {
      host.stats.unhandled++;
      return host.refusals.refuse(envelope, BufferErrorCode.NoHandler, `Instance "${host.instanceId}" has no handler for "${envelope.pattern}".`);
    }
    host.invoker.request(route, envelope, channel, deadline, now);
  }
}
