import type { Redis } from 'ioredis';
import { keyOf, type ConsumerContext, type Held, type Subscription } from './held-entries.js';

/** Polling for an entry's turn (same key, held by another instance) or a duplicate's outcome: 10 ms doubling to this. */
const MAX_WAIT_POLL_MS = 250;

/**
 * Per-key turns, seen from this instance: an entry whose key has an earlier unacknowledged entry
 * (the BEGIN script says 'wait') polls until it is the key's head. An acknowledgement of that key,
 * here (an entry let go) or on another instance (a message on the group's turn channel), wakes it
 * at once; pub/sub may lose a message, so the poll remains.
 */
export class KeyGate {
  private connection: Redis | undefined;

  constructor(
    private readonly context: ConsumerContext,
    private readonly resume: (held: Held) => void,
  ) {
    context.held.onFinish((held) => {
      // The next entry with this key may be waiting here: let it look now rather than at its next poll.
      const key = keyOf(held);
      if (key !== undefined) this.onTurn(turnChannel(held.subscription), key);
    });
  }

  /** Listens on the groups' turn channels, on a connection of its own (a subscriber can do nothing else). */
  async open(connection: Redis, subscriptions: readonly Subscription[]): Promise<void> {
    this.connection = connection;
    connection.on('message', (channel: string, key: string) => this.onTurn(channel, key));
    await connection.subscribe(...new Set(subscriptions.map(turnChannel)));
  }

  close(): void {
    this.connection?.disconnect();
  }

  /** Looks again later: sooner after a few rounds' backoff, or at once when `forTurn` and its key's turn comes. */
  wait(held: Held, forTurn: boolean): void {
    held.waitingTurn = forTurn;
    held.timer = setTimeout(() => this.resume(held), Math.min(MAX_WAIT_POLL_MS, 10 * 2 ** held.waits++));
  }

  /** An entry with this key was acknowledged in the channel's group: the next one held here may start. */
  private onTurn(channel: string, key: string): void {
    for (const other of this.context.held.values()) {
      if (other.waitingTurn && keyOf(other) === key && turnChannel(other.subscription) === channel) {
        other.waitingTurn = false;
        clearTimeout(other.timer);
        other.timer = setTimeout(() => this.resume(other), 0);
      }
    }
  }
}

function turnChannel(subscription: Subscription): string {
  return subscription.keys.turnChannel(subscription.group);
}
