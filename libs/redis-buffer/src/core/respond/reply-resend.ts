import type { Clock } from '../clock.js';
import { ConnectionLostError } from '../errors/connection-lost.error.js';
import type { BufferLogger } from '../logger.js';
import type { ReplyWriter } from './reply-writer.js';
import type { ResponderStats } from './responder-stats.js';

/** Where a reply writer's failed PUBLISH goes. */
export interface ReplyDelivery {
  /**
   * A PUBLISH carrying replies of `writer` failed with `error`: whether they wait to be sent again
   * once the connection is back (`writer.resendHeld()`), rather than being lost.
   */
  holdForResend(writer: ReplyWriter, error: Error): boolean;
  /** Replies to `replyTo` that are lost for good. */
  lost(error: Error, replyTo: string): void;
}

/**
 * Sends again the replies whose PUBLISH failed because the connection to Redis was away, once it is
 * back, while their request's deadline has not passed.
 *
 * The caller counted this instance as a receiver when Redis delivered the request (rule 10: every
 * receiver answers), and waits for its reply until the deadline. The subscriber connection can be
 * back before the publisher (each reconnects on its own), or a PUBLISH can be cut off by the
 * connection closing under it: without this, that reply is gone and the caller waits in vain.
 * A reply that did reach Redis before the connection closed may arrive twice; the caller drops the
 * second copy by its sequence number.
 */
export class ReplyResend implements ReplyDelivery {
  private readonly waiting = new Set<ReplyWriter>();
  private closed = false;
  private resendQueued = false;

  constructor(
    private readonly clock: Clock,
    /** Whether the bus is connected now. */
    private readonly connected: () => boolean,
    /** Runs `callback` on a later turn of the event loop. */
    private readonly later: (callback: () => void) => void,
    /** Counts what is resent and what is lost. */
    private readonly stats: Pick<ResponderStats, 'replyPublishFailures' | 'repliesResent'>,
    /** Bounded: a Redis outage can make many replies fail at once. */
    private readonly log: Pick<BufferLogger, 'warn'>,
  ) {}

  /** How many writers hold replies waiting for the connection. */
  get size(): number {
    return this.waiting.size;
  }

  holdForResend(writer: ReplyWriter, error: Error): boolean {
    if (this.closed || !(error instanceof ConnectionLostError) || writer.deadline === undefined || this.clock.now() >= writer.deadline) return false;
    this.waiting.add(writer);
    // The connection may be back already (the failure was reported after it returned).
    if (this.connected()) this.queueResend();
    return true;
  }

  lost(error: Error, replyTo: string): void {
    this.stats.replyPublishFailures++;
    this.log.warn(`Could not publish a reply to "${replyTo}": ${error.message}`);
  }

  /** The bus reports `connected` again: everything held and still wanted is sent. */
  reconnected(): void {
    if (this.waiting.size > 0) this.queueResend();
  }

  /** Closing: what still waits is lost. */
  close(): void {
    this.closed = true;
    this.settle();
  }

  private queueResend(): void {
    if (this.resendQueued) return;
    this.resendQueued = true;
    this.later(() => {
      this.resendQueued = false;
      if (this.connected()) this.settle();
    });
  }

  /** Sends what is held when connected and still wanted; what is not is lost. */
  private settle(): void {
    const writers = [...this.waiting];
    this.waiting.clear();
    const connected = this.connected();
    const now = this.clock.now();
    for (const writer of writers) {
      if (connected && now < writer.deadline!) {
        writer.resendHeld();
        this.stats.repliesResent++;
      } else {
        writer.dropHeld(new ConnectionLostError(connected ? "the connection came back after the request's deadline" : 'the instance closed before the connection came back'));
      }
    }
  }
}
