import { BaseRpcContext } from '@nestjs/microservices';
import type { BufferHeaders } from '../core/wire/envelope.js';
import type { MessageContext } from '../core/respond/message-context.js';

/** What a handler learns about the message it is handling (the core `MessageContext`). */
export type BufferMessageInfo = MessageContext;

/**
 * The handler's context, injected with `@Ctx()`: the core `MessageContext` of the message, as a
 * Nest `BaseRpcContext`.
 *
 * @example
 * ```ts
 * @BufferedPattern('sessions.count')
 * count(@Ctx() ctx: BufferContext) {
 *   if (ctx.getRemainingMs() < 10) return null;
 *   return { tenant: ctx.getHeaders()['x-tenant'], count: this.sessions.size };
 * }
 * ```
 */
export class BufferContext extends BaseRpcContext<[BufferMessageInfo]> {
  constructor(info: BufferMessageInfo) {
    super([info]);
  }

  private get info(): BufferMessageInfo {
    return this.args[0];
  }

  getRequestId(): string {
    return this.info.requestId;
  }

  /** The instance id of the caller. */
  getSenderId(): string {
    return this.info.senderId;
  }

  /** The id of the instance running this handler. */
  getInstanceId(): string {
    return this.info.instanceId;
  }

  getPattern(): string {
    return this.info.pattern;
  }

  getChannel(): string {
    return this.info.channel;
  }

  getHeaders(): BufferHeaders {
    return this.info.headers;
  }

  getHeader(name: string): string | undefined {
    // An own-property check: "constructor" or "toString" must not find Object's.
    return Object.hasOwn(this.info.headers, name) ? this.info.headers[name] : undefined;
  }

  /** When the caller stops waiting, in ms since the epoch by this host's clock; `undefined` for events. */
  getDeadline(): number | undefined {
    return this.info.deadline;
  }

  /** Milliseconds left before the deadline (never negative); `Infinity` for events. */
  getRemainingMs(): number {
    return this.info.deadline === undefined ? Infinity : Math.max(0, this.info.deadline - Date.now());
  }

  isEvent(): boolean {
    return this.info.kind === 'event';
  }
}
