import type { Cluster, Redis } from 'ioredis';
import type { BusClients } from './redis-bus.js';

/** What one bounded round trip found, per connection. */
export interface RoundTripResult {
  /** Every connection answered its PING within the bound. */
  readonly ok: boolean;
  /** The slowest answer, in ms (the bound when one did not answer). */
  readonly latencyMs: number;
  /** The connections that did not answer in time, or failed (`publisher`, `subscriber`, a cluster node's `host:port`). */
  readonly unanswered: readonly string[];
}

/**
 * A PING on every connection a bus depends on, each with its own timer: the one check that notices
 * the faults that close no socket (a SIGSTOPped or `CLIENT PAUSE`d server, a network blackhole),
 * where ioredis keeps reporting `ready`. Works on a subscriber connection too (PING is allowed in
 * subscribe mode). Never rejects.
 */
export async function probeRoundTrip(clients: BusClients, timeoutMs: number): Promise<RoundTripResult> {
  const targets: Array<[string, Redis | Cluster]> = [];
  if ('subscriber' in clients) {
    targets.push(['publisher', clients.publisher], ['subscriber', clients.subscriber]);
  } else {
    // Each master answers for its own slots: PING them all, not whichever node the cluster client picks.
    const masters = clients.publisher.nodes('master');
    for (const node of masters) targets.push([`${node.options.host}:${node.options.port}`, node]);
    for (const [name, connection] of clients.subscribers) targets.push([`subscriber ${name}`, connection]);
  }
  const started = performance.now();
  const answers = await Promise.all(targets.map(([name, connection]) => pingWithin(connection, timeoutMs).then((ok) => [name, ok, performance.now() - started] as const)));
  const unanswered = answers.filter(([, ok]) => !ok).map(([name]) => name);
  const latencyMs = answers.reduce((slowest, [, ok, ms]) => Math.max(slowest, ok ? ms : timeoutMs), 0);
  return { ok: unanswered.length === 0 && targets.length > 0, latencyMs: Math.round(latencyMs * 100) / 100, unanswered };
}

function pingWithin(connection: Redis | Cluster, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    timer.unref?.();
    connection.ping().then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(false);
      },
    );
  });
}
