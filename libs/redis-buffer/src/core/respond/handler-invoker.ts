import type { Coalescer } from '../bus/coalescer.js';
import type { Clock } from '../clock.js';
import type { BufferLogger } from '../logger.js';
import type { BufferTelemetry, ProcessTrace } from '../telemetry/telemetry.js';
import type { EventEnvelope, RequestEnvelope } from '../wire/envelope.js';
import type { ActiveWork } from './active-work.js';
import type { EventRoute, RequestRoute } from './inbound-routes.js';
import { runEvent, type EventRunHost } from './event-run.js';
import { HandlerRun, type HandlerRunHost } from './handler-run.js';
import { messageContext, type MessageContext } from './message-context.js';
import type { ReplyDelivery } from './reply-resend.js';
import type { ResponderHandler, RunAround } from './responder-seams.js';

/** What the invoker's request runs share, besides the coalescer they reply through (see `HandlerRunHost`). */
export interface InvokerSettings {
  readonly instanceId: string;
  readonly fromJson: string;
  readonly maxPayloadBytes: number;
  readonly clock: Clock;
  readonly delivery: ReplyDelivery;
}

const noEndHook = (): void => {};

/**
 * Calls an instance's handlers once admission let a message through: builds the handler's context,
 * starts its span, runs it inside what runs around handlers (Nest's processing hooks), and hands
 * what it produced to a `HandlerRun` (requests) or follows it to its end (events).
 */
export class HandlerInvoker<C> {
  private runHost: HandlerRunHost | undefined;
  // Shared by every event run.
  private readonly eventHost: EventRunHost<C>;

  constructor(
    private readonly settings: InvokerSettings,
    private readonly telemetry: BufferTelemetry,
    private readonly work: ActiveWork,
    logger: BufferLogger,
    private readonly makeContext: ((message: MessageContext) => C) | undefined,
    private readonly runAround: RunAround<C> | undefined,
  ) {
    this.eventHost = {
      telemetry,
      logger,
      around: (context, handler) => this.around(context, handler),
      start: (token) => work.start(token, settings.clock.now()),
      track: work.track,
      done: work.done,
    };
  }

  /** The coalescer request runs reply through, once connected. */
  attach(coalescer: Coalescer): void {
    const { clock, fromJson, maxPayloadBytes, delivery } = this.settings;
    this.runHost = { coalescer, clock, fromJson, maxPayloadBytes, delivery, telemetry: this.telemetry, done: this.work.done, track: this.work.track };
  }

  /** Runs the route's handler for an admitted request, due by `deadline`, starting `now` (this host's clock). */
  request({ handler, binding }: RequestRoute<C>, envelope: RequestEnvelope, channel: string, deadline: number, now: number): void {
    const context = this.contextFor(envelope, channel, deadline);
    const trace = this.telemetry.startProcess('request', envelope.pattern, binding, channel, envelope.id, envelope.from, envelope.headers);
    const run = new HandlerRun(this.runHost!, envelope, deadline, trace);
    this.work.start(run, now);
    if (trace === undefined && this.runAround?.active() !== true) {
      // Nothing to run around the handler (no hook, no span): call it and take its result, with no
      // wrapper promise per request.
      let result: unknown;
      try {
        result = handler(envelope.data, context);
      } catch (error) {
        return run.failed(error);
      }
      return run.returned(result);
    }
    this.runWrapped(run, handler, envelope, context, trace);
  }

  /** Runs the route's handler for an admitted event. */
  event({ handler, binding }: EventRoute<C>, envelope: EventEnvelope, channel: string): void {
    runEvent(this.eventHost, handler, binding, envelope, channel, this.contextFor(envelope, channel, undefined));
  }

  /** A handler run inside what runs around it and its span (kept apart: the common path allocates none of its closures). */
  private runWrapped(run: HandlerRun, handler: ResponderHandler<C>, envelope: RequestEnvelope, context: C, trace: ProcessTrace | undefined): void {
    this.telemetry
      .runInContext(trace, () =>
        this.around(context, async (runEnd) => {
          run.endHook = runEnd;
          run.produced(await handler(envelope.data, context));
        }),
      )
      .catch((error: unknown) => run.failed(error));
  }

  /** `handler` inside what runs around it; one that throws synchronously is that message's error, not the Redis listener's. */
  private around(context: C, handler: (runEnd: () => void) => Promise<void>): Promise<void> {
    if (this.runAround === undefined) return handler(noEndHook);
    try {
      return Promise.resolve(this.runAround.run(context, handler)) as Promise<void>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private contextFor(envelope: RequestEnvelope | EventEnvelope, channel: string, deadline: number | undefined): C {
    const message = messageContext(envelope, channel, this.settings.instanceId, deadline);
    return this.makeContext === undefined ? (message as C) : this.makeContext(message);
  }
}
