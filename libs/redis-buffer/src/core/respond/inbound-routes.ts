import { BufferErrorCode } from '../errors/buffer.error.js';
import { channelPattern, type BufferChannels } from '../wire/channels.js';
import type { EventEnvelope, RequestEnvelope } from '../wire/envelope.js';
import { checkBindingPattern } from '../wire/topic.js';
import type { Refusals } from './refusals.js';
import type { ResponderHandler } from './responder-seams.js';
import type { ResponderStats } from './responder-stats.js';
import { SeenDeliveries } from './seen-deliveries.js';
import { TopicRoutes } from './topic-routes.js';

export interface RequestRoute<C> {
  readonly handler: ResponderHandler<C>;
  /** The pattern the handler is bound to, as it travels: exact, or a wildcard the topic matched. */
  readonly binding: string;
  /** The channel its requests arrive on (besides the direct channel). */
  readonly channel: string;
}

export interface EventRoute<C> {
  readonly handler: ResponderHandler<C>;
  /** The pattern the handler is bound to, as it travels: exact, or a wildcard the topic matched. */
  readonly binding: string;
}

/** How long an event is remembered against its repeat deliveries (they come within moments). */
const EVENT_REPEAT_MEMORY_MS = 30_000;
/** At most this long for a request, beyond which its caller stopped waiting anyway, plus a second. */
const REQUEST_REPEAT_MEMORY_MS = 60_000;

/**
 * Which of an instance's handlers an inbound request or event reaches, by the channel it came on:
 * exact patterns, and topic wildcards (the most specific request handler; every matching event
 * handler), with repeat deliveries of one topic message on several bound channels taken once.
 * A message on a channel its pattern does not belong to is refused or dropped here.
 */
export class InboundRoutes<C> {
  /** By channel form of the pattern (what travels), exact and wildcard. Events apart: one pattern can have both kinds. */
  readonly requests = new TopicRoutes<RequestRoute<C>>();
  readonly events = new TopicRoutes<EventRoute<C>>();
  private readonly requestPrefix: string;
  private readonly eventPrefix: string;
  private readonly directChannel: string;
  // Topic requests and events taken, against their deliveries on this instance's other matching bindings.
  private readonly seen: SeenDeliveries;

  constructor(
    private readonly channels: BufferChannels,
    instanceId: string,
    private readonly refusals: Refusals,
    private readonly stats: ResponderStats,
    now: () => number,
  ) {
    this.requestPrefix = channels.request('');
    this.eventPrefix = channels.event('');
    this.directChannel = channels.direct(instanceId);
    this.seen = new SeenDeliveries(now);
  }

  /** Adds a request handler for `pattern`; `open` while handlers may still be registered. */
  handle(pattern: unknown, handler: ResponderHandler<C>, open: boolean): void {
    const key = newRouteKey(pattern, handler, this.requests, open);
    this.requests.set(key, { handler, binding: key, channel: this.channels.request(key) });
  }

  /** Adds an event handler for `pattern`; `open` while handlers may still be registered. */
  onEvent(pattern: unknown, handler: ResponderHandler<C>, open: boolean): void {
    const key = newRouteKey(pattern, handler, this.events, open);
    this.events.set(key, { handler, binding: key });
  }

  /** The channels to subscribe besides the direct and `who` ones: one per request and per event pattern. */
  workChannels(): string[] {
    return [...[...this.requests.values()].map((route) => route.channel), ...[...this.events.keys()].map((pattern) => this.channels.event(pattern))];
  }

  /**
   * The route of a request (`undefined`: no handler, refused as such later); `false` when it has
   * been answered already: refused (it came on the channel of another pattern), or a repeat
   * delivery of a topic request, answered with a repeat reply.
   */
  request(channel: string, envelope: RequestEnvelope, remainingMs: number): RequestRoute<C> | undefined | false {
    return this.requests.hasWildcards ? this.topicRoute(channel, envelope, remainingMs) : this.exactRoute(channel, envelope);
  }

  /**
   * The handlers of an event when this instance binds a wildcard event pattern, most specific first;
   * `undefined` without wildcards (the exact handler is looked up when it runs, see `event`);
   * `false` when it is dropped: on the channel of a pattern that does not take it, or a repeat
   * delivery (the handlers ran on the first).
   */
  eventHandlers(channel: string, envelope: EventEnvelope): Array<EventRoute<C>> | undefined | false {
    if (this.events.hasWildcards) return this.topicHandlers(channel, envelope);
    if (channel === this.channels.event(envelope.pattern)) return undefined;
    this.refusals.rejectInput(`Dropped an event for "${envelope.pattern}" that arrived on "${channel}".`);
    return false;
  }

  /** The handler bound to exactly `pattern`. */
  event(pattern: string): EventRoute<C> | undefined {
    return this.events.get(pattern);
  }

  private exactRoute(channel: string, envelope: RequestEnvelope): RequestRoute<C> | undefined | false {
    const route = this.requests.get(envelope.pattern);
    // This instance subscribes only the channels of the patterns it handles (and its direct channel).
    if (channel !== this.directChannel && channel !== route?.channel) {
      this.refusals.malformed(envelope, BufferErrorCode.BadRequest, `The request for "${envelope.pattern}" arrived on "${channel}", the channel of another pattern.`);
      return false;
    }
    return route;
  }

  private topicRoute(channel: string, envelope: RequestEnvelope, remainingMs: number): RequestRoute<C> | undefined | false {
    const topic = envelope.pattern;
    const routes = this.requests;
    if (channel === this.directChannel) return routes.best(topic);
    const binding = channel.startsWith(this.requestPrefix) ? channel.slice(this.requestPrefix.length) : '';
    if (!routes.takes(binding, topic)) {
      this.refusals.malformed(envelope, BufferErrorCode.BadRequest, `The request for "${topic}" arrived on "${channel}", the channel of a pattern that does not match it.`);
      return false;
    }
    const matching = routes.matching(topic);
    if (matching.length > 1 && !this.seen.firstTime(`${envelope.replyTo}\n${envelope.id}`, Math.min(Math.max(0, remainingMs), REQUEST_REPEAT_MEMORY_MS) + 1000)) {
      this.refusals.repeated(envelope, binding);
      return false;
    }
    return matching[0];
  }

  private topicHandlers(channel: string, envelope: EventEnvelope): Array<EventRoute<C>> | false {
    const topic = envelope.pattern;
    const binding = channel.startsWith(this.eventPrefix) ? channel.slice(this.eventPrefix.length) : '';
    if (!this.events.takes(binding, topic)) {
      this.refusals.rejectInput(`Dropped an event for "${topic}" that arrived on "${channel}", the channel of a pattern that does not match it.`);
      return false;
    }
    const handlers = this.events.matching(topic);
    if (handlers.length > 1 && !this.seen.firstTime(`${envelope.from}\n${envelope.id}`, EVENT_REPEAT_MEMORY_MS)) {
      this.stats.repeatDeliveries++;
      return false;
    }
    return handlers;
  }
}

/**
 * The channel form of a handler's `pattern`, checked: registered before `listen()` (`open`), a
 * function, a valid topic pattern, and the first for that pattern among `routes`.
 */
function newRouteKey(pattern: unknown, handler: unknown, routes: { has(key: string): boolean }, open: boolean): string {
  if (!open) throw new Error('Register handlers before listen(): its subscriptions are made once.');
  if (typeof handler !== 'function') throw new TypeError('A handler must be a function (data, context) => value | Promise | Observable.');
  // A malformed wildcard, or a wildcard inside an object pattern, is refused here (TopicPatternError).
  checkBindingPattern(pattern);
  const key = channelPattern(pattern);
  if (routes.has(key)) throw new Error(`A handler for "${key}" is already registered.`);
  return key;
}
