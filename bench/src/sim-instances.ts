// A process hosting many simulated instances that speak the wire protocol (docs/protocol.md) on
// plain ioredis, for the 1,000-instances benchmark (instances.ts). argv: first and last instance
// number; BENCH_ENDPOINTS as for the other bench processes.
//
// Each instance has its own subscriber connection (Redis counts a PUBLISH's receivers per
// connection, and callers wait for that many), subscribed to the request channel of the bench
// pattern, its direct channel and the who channel; it publishes a hello on the members channel
// once subscribed, answers every who with a hello and every ping with a pong, and every request
// with one reply. The instances of a process share one publisher connection: everything bound for
// one channel within one event-loop turn goes out as one PUBLISH (a batch), as the library does.
// A message delivered to many of them is parsed once per turn.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ECHO_PATTERN, REPLY_DATA, type Endpoints } from './common.js';

const endpoints = JSON.parse(process.env.BENCH_ENDPOINTS!) as Endpoints;
const first = Number(process.argv[2]);
const last = Number(process.argv[3]);
const ns = `${endpoints.namespace}-instances`;
const replyBody = JSON.stringify(REPLY_DATA);
// Receivers drop a batch of more than 10,000 envelopes.
const MAX_BATCH = 5000;

interface Parsed {
  readonly kind: string;
  readonly id: string;
  readonly replyTo?: string;
  /** `1`: the caller reads compact replies (docs/protocol.md, "Compact replies"). */
  readonly cr?: number;
}

class Instance {
  readonly fromJson: string;
  readonly inc = randomBytes(8).toString('hex');
  private seq = 0;
  readonly subscriber: Redis;

  constructor(readonly id: string) {
    this.fromJson = JSON.stringify(id);
    this.subscriber = new Redis(endpoints.redisUrl, { lazyConnect: true });
  }

  hello(id: string): string {
    return `{"v":1,"kind":"hello","id":${JSON.stringify(id)},"from":${this.fromJson},"inc":"${this.inc}","seq":${this.seq++},"at":${Date.now()},"patterns":["${ECHO_PATTERN}"],"events":[]}`;
  }

  answer(message: Parsed): void {
    switch (message.kind) {
      case 'request':
        // In the compact form when the caller reads it, as the library's instances answer.
        if (message.cr === 1) return queue(message.replyTo!, `[${JSON.stringify(message.id)},${this.fromJson},0,true,${replyBody}]`);
        return queue(message.replyTo!, `{"v":1,"kind":"reply","id":${JSON.stringify(message.id)},"from":${this.fromJson},"seq":0,"done":true,"data":${replyBody}}`);
      case 'who':
        return queue(message.replyTo!, this.hello(message.id));
      case 'ping':
        return queue(message.replyTo!, `{"v":1,"kind":"pong","id":${JSON.stringify(message.id)},"from":${this.fromJson},"inc":"${this.inc}"}`);
    }
  }
}

const publisher = new Redis(endpoints.redisUrl, { lazyConnect: true });
let outgoing = new Map<string, string[]>();
let flushScheduled = false;
// A message reaches each instance of this process as its own copy: parse the first, reuse it this turn.
let parsedThisTurn = new Map<string, Parsed[]>();

function flush(): void {
  flushScheduled = false;
  parsedThisTurn = new Map();
  const batches = outgoing;
  outgoing = new Map();
  for (const [channel, parts] of batches) {
    for (let start = 0; start < parts.length; start += MAX_BATCH) {
      const chunk = parts.slice(start, start + MAX_BATCH);
      // A lone compact reply (an array) is still sent as a batch.
      void publisher.publish(channel, chunk.length === 1 && !chunk[0]!.startsWith('[') ? chunk[0]! : `[${chunk.join(',')}]`).catch(() => undefined);
    }
  }
}

function schedule(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flush);
}

function queue(channel: string, envelope: string): void {
  let parts = outgoing.get(channel);
  if (parts === undefined) outgoing.set(channel, (parts = []));
  parts.push(envelope);
  schedule();
}

function parse(message: string): Parsed[] {
  let parsed = parsedThisTurn.get(message);
  if (parsed === undefined) {
    const value = JSON.parse(message) as Parsed | Parsed[];
    parsed = Array.isArray(value) ? value : [value];
    parsedThisTurn.set(message, parsed);
    schedule();
  }
  return parsed;
}

async function main(): Promise<void> {
  await publisher.connect();
  const instances: Instance[] = [];
  for (let index = first; index <= last; index++) instances.push(new Instance(`sim-${index}`));
  // Connect in small groups: a thousand connections at once overrun the listen backlog.
  for (let start = 0; start < instances.length; start += 50) {
    await Promise.all(
      instances.slice(start, start + 50).map(async (instance) => {
        await instance.subscriber.connect();
        instance.subscriber.on('message', (_channel: string, message: string) => {
          for (const envelope of parse(message)) instance.answer(envelope);
        });
        await instance.subscriber.subscribe(`${ns}:req:${ECHO_PATTERN}`, `${ns}:direct:${instance.id}`, `${ns}:who`);
      }),
    );
  }
  // Subscribed first, then announced: an instance callers know of is always reachable.
  for (const instance of instances) queue(`${ns}:members`, instance.hello(randomBytes(6).toString('hex')));
  process.send?.({ ready: true });
  const exit = (): void => {
    for (const instance of instances) instance.subscriber.disconnect();
    publisher.disconnect();
    process.exit(0);
  };
  process.on('message', (message: { op?: string }) => message?.op === 'exit' && exit());
  process.on('disconnect', exit);
  process.on('SIGTERM', exit);
}

main().catch((error: unknown) => {
  process.stderr.write(`simulated instances failed: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
