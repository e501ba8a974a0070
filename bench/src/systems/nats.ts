// System 4: NATS requestMany with the count strategy, against a nats-server the benchmark starts.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { HOLD_PATTERN, REPLY_DATA } from '../common.js';
import type { CallerSystem, Done, ResponderGroup } from './types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsCaller implements CallerSystem {
  private nc: NatsConnection | undefined;

  constructor(
    private readonly url: string,
    private readonly namespace: string,
  ) {}

  async start(): Promise<void> {
    this.nc = await connect({ servers: this.url });
  }

  request(n: number, pattern: string, data: unknown, done: Done): void {
    let replies = 0;
    const subject = `${this.namespace}.${pattern}`;
    const maxWait = pattern === HOLD_PATTERN ? 30_000 : 5000;
    this.nc!.requestMany(subject, encoder.encode(JSON.stringify(data)), { strategy: 'count', maxMessages: n, maxWait })
      .then(async (iterable) => {
        for await (const message of iterable) {
          JSON.parse(decoder.decode(message.data));
          replies++;
        }
        done(replies === n ? undefined : new Error(`${replies} of ${n} replies`), replies);
      })
      .catch((error: unknown) => done(error, replies));
  }

  async close(): Promise<void> {
    await this.nc?.close();
  }
}

export async function startNatsResponders(url: string, namespace: string, ids: readonly string[]): Promise<ResponderGroup> {
  const connections: NatsConnection[] = [];
  for (const id of ids) {
    const nc = await connect({ servers: url, name: id });
    connections.push(nc);
    const reply = encoder.encode(JSON.stringify(REPLY_DATA));
    nc.subscribe(`${namespace}.>`, {
      callback: (error, message) => {
        if (error) return;
        const data: unknown = JSON.parse(decoder.decode(message.data));
        if (message.subject.endsWith(HOLD_PATTERN)) setTimeout(() => message.respond(encoder.encode('null')), Number(data));
        else message.respond(reply);
      },
    });
    await nc.flush();
  }
  return { close: async () => void (await Promise.all(connections.map((nc) => nc.close()))) };
}
