import { Redis } from 'ioredis';

/** A plain ioredis connection, for publishing raw protocol messages by hand in tests. */
export function rawRedis(url: string): Redis {
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
}

/** Subscribes to `channel` and collects every message. */
export async function collect(url: string, channel: string): Promise<{ messages: string[]; close(): Promise<void> }> {
  const subscriber = new Redis(url);
  const messages: string[] = [];
  subscriber.on('message', (received: string, message: string) => {
    if (received === channel) messages.push(message);
  });
  await subscriber.subscribe(channel);
  return { messages, close: async () => void (await subscriber.quit()) };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The requests one request message holds, as objects, whatever its form: one object, a batch of
 * objects, or compact requests after a head (docs/protocol.md, "Compact requests"), which this
 * library's callers send to its instances. What tests read off the wire, as a receiver would.
 */
export function requestsIn(message: unknown): Array<Record<string, unknown>> {
  const batch = (Array.isArray(message) ? message : [message]) as unknown[];
  const head = batch[0] as Record<string, unknown> | undefined;
  const elements = head?.kind === 'requests' ? batch.slice(1) : batch;
  return elements
    .map((element) => {
      if (!Array.isArray(element)) return element as Record<string, unknown>;
      const [id, pattern, ttl, data, headers] = element as unknown[];
      return { v: 1, kind: 'request', id, pattern, from: head?.from, replyTo: head?.replyTo, ttl, sent: head?.sent, cr: head?.cr, headers: headers ?? {}, data };
    })
    .filter((element) => element.kind === 'request');
}
