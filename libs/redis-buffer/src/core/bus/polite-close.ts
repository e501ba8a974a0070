import type { Cluster, Redis } from 'ioredis';
import { within } from '../async/bounded-wait.js';

/** How long a QUIT may take before the connection is simply dropped (Redis frozen, or a command it waits behind). */
export const QUIT_TIMEOUT_MS = 1000;

/**
 * Closes an ioredis connection (or Cluster) politely: QUIT if it is up, waiting at most `boundMs`
 * for Redis to answer, then `disconnect()` in every case. The QUIT lets Redis finish what was sent
 * before it; the disconnect stops reconnection attempts, and is the only thing that closes the
 * connections to the sentinels ioredis's failover detector keeps open, which would otherwise hold
 * the process alive.
 */
export async function closePolitely(connection: Redis | Cluster | undefined, boundMs = QUIT_TIMEOUT_MS): Promise<void> {
  if (connection === undefined) return;
  if (connection.status === 'ready') await within(connection.quit(), boundMs);
  connection.disconnect();
}

/**
 * Stops a connection that is still connecting, for good. A TLS handshake cut short can make the
 * socket emit a second error (the server's alert answering the close) after ioredis has dropped its
 * one-shot error listener: that error is swallowed here instead of crashing the process.
 */
export function abandonConnecting(connection: Redis): void {
  (connection as unknown as { stream?: NodeJS.EventEmitter }).stream?.on('error', () => undefined);
  connection.disconnect();
}
