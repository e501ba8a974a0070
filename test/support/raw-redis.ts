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
