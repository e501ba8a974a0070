import { within } from '../async/bounded-wait.js';
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
 * A round trip on every connection a bus depends on, each with its own timer: the one check that
 * notices the faults that close no socket (a SIGSTOPped or `CLIENT PAUSE`d server, a network
 * blackhole), where ioredis keeps reporting `ready`. Publishing connections PUBLISH to
 * `probeChannel` (a write, held by `CLIENT PAUSE WRITE` like the library's own PUBLISHes);
 * subscriber connections PING (allowed in subscribe mode). Never rejects.
 */
export async function probeRoundTrip(clients: BusClients, timeoutMs: number, probeChannel: string): Promise<RoundTripResult> {
  const targets: Array<[string, () => Promise<unknown>]> = [];
  if ('subscriber' in clients) {
    const { publisher, subscriber } = clients;
    targets.push(['publisher', () => publisher.publish(probeChannel, 'probe')], ['subscriber', () => subscriber.ping()]);
  } else {
    // Each master answers for its own slots: probe them all, not whichever node the cluster client picks.
    for (const node of clients.publisher.nodes('master')) targets.push([`${node.options.host}:${node.options.port}`, () => node.publish(probeChannel, 'probe')]);
    for (const [name, connection] of clients.subscribers) targets.push([`subscriber ${name}`, () => connection.ping()]);
  }
  const started = performance.now();
  const answers = await Promise.all(targets.map(([name, command]) => answeredWithin(command, timeoutMs).then((ok) => [name, ok, performance.now() - started] as const)));
  const unanswered = answers.filter(([, ok]) => !ok).map(([name]) => name);
  const latencyMs = answers.reduce((slowest, [, ok, ms]) => Math.max(slowest, ok ? ms : timeoutMs), 0);
  return { ok: unanswered.length === 0 && targets.length > 0, latencyMs: Math.round(latencyMs * 100) / 100, unanswered };
}

/** Whether `command` answered (without an error) within `timeoutMs`. */
async function answeredWithin(command: () => Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let answered = false;
  let sent: Promise<unknown>;
  try {
    sent = command();
  } catch {
    return false;
  }
  await within(
    sent.then(() => {
      answered = true;
    }),
    timeoutMs,
  );
  return answered;
}
