// A process hosting many simulated instances that speak the wire protocol (docs/protocol.md) on
// plain ioredis, for the 1,000-instances benchmark (instances.ts). argv: first and last instance
// number, then `own` or `shared` (how replies are batched, below); BENCH_ENDPOINTS as for the other
// bench processes.
//
// Each instance has its own subscriber connection (Redis counts a PUBLISH's receivers per
// connection, and callers wait for that many), subscribed to the request channel of the bench
// pattern, its direct channel and the who channel; it publishes a hello on the members channel
// once subscribed, answers every who with a hello and every ping with a pong, and every request
// with one reply. The instances of a process share one publisher connection. With `own` (the
// default), each instance batches what it sends as a library instance does: what it has for one
// channel within one event-loop turn goes out as one PUBLISH, so a caller gets one message per
// instance. With `shared`, the process batches its instances' envelopes together (fewer, larger
// messages: less work for the caller than real instances give it). Either way a batch holds at
// most what the library's own coalescer puts in one (256 envelopes, 64 KiB): past 128 KiB a
// string lands in V8's large-object space, and the caller's cost per reply doubles (measured).
// A message delivered to many of them is parsed once per turn.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { ECHO_PATTERN, REPLY_DATA, type Endpoints } from './common.js';

const endpoints = JSON.parse(process.env.BENCH_ENDPOINTS!) as Endpoints;
const first = Number(process.argv[2]);
const last = Number(process.argv[3]);
const ns = `${endpoints.namespace}-instances`;
const replyBody = JSON.stringify(REPLY_DATA);
const sharedBatches = process.argv[4] === 'shared';
// The library's own batch limits (options `maxBatchCount` and `maxBatchBytes`, their defaults).
const MAX_BATCH_COUNT = 256;
const MAX_BATCH_BYTES = 64 * 1024;

interface Parsed {
  readonly kind: string;
  readonly id: string;
  readonly replyTo?: string;
  /** `1`: the caller reads compact replies (docs/protocol.md, "Compact replies"). */
  readonly cr?: number;
}

class Instance {
  /** What this instance has to send this turn, by channel (`own` batching). */
  outgoing = new Map<string, string[]>();
  readonly fromJson: string;
  readonly inc = randomBytes(8).toString('hex');
  private seq = 0;
  readonly subscriber: Redis;

  constructor(readonly id: string) {
    this.fromJson = JSON.stringify(id);
    this.subscriber = new Redis(endpoints.redisUrl, { lazyConnect: true });
  }

  hello(id: string): string {
    // `cq`: it reads compact requests, as the library's instances do.
    return `{"v":1,"kind":"hello","id":${JSON.stringify(id)},"from":${this.fromJson},"inc":"${this.inc}","seq":${this.seq++},"at":${Date.now()},"patterns":["${ECHO_PATTERN}"],"events":[],"cq":1}`;
  }

  answer(message: Parsed): void {
    switch (message.kind) {
      case 'request':
        // In the compact form when the caller reads it, as the library's instances answer.
        if (message.cr === 1) return queue(this, message.replyTo!, `[${JSON.stringify(message.id)},${this.fromJson},0,true,${replyBody}]`);
        return queue(this, message.replyTo!, `{"v":1,"kind":"reply","id":${JSON.stringify(message.id)},"from":${this.fromJson},"seq":0,"done":true,"data":${replyBody}}`);
      case 'who':
        return queue(this, message.replyTo!, this.hello(message.id));
      case 'ping':
        return queue(this, message.replyTo!, `{"v":1,"kind":"pong","id":${JSON.stringify(message.id)},"from":${this.fromJson},"inc":"${this.inc}"}`);
    }
  }
}

const publisher = new Redis(endpoints.redisUrl, { lazyConnect: true });
// `shared` batching: what this process's instances send this turn, by channel.
let outgoing = new Map<string, string[]>();
// `own` batching: the instances with something to send this turn.
let sending: Instance[] = [];
let flushScheduled = false;
// A message reaches each instance of this process as its own copy: parse the first, reuse it this turn.
let parsedThisTurn = new Map<string, Parsed[]>();

function flush(): void {
  flushScheduled = false;
  parsedThisTurn = new Map();
  const batches = outgoing;
  outgoing = new Map();
  for (const [channel, parts] of batches) publishBatches(channel, parts);
  const instances = sending;
  sending = [];
  for (const instance of instances) {
    const own = instance.outgoing;
    instance.outgoing = new Map();
    for (const [channel, parts] of own) publishBatches(channel, parts);
  }
}

/** `parts` as PUBLISHes of at most the library's batch limits. */
function publishBatches(channel: string, parts: readonly string[]): void {
  let start = 0;
  while (start < parts.length) {
    let end = start;
    let bytes = 2;
    while (end < parts.length && end - start < MAX_BATCH_COUNT && (end === start || bytes + parts[end]!.length + 1 <= MAX_BATCH_BYTES)) bytes += parts[end++]!.length + 1;
    const chunk = parts.slice(start, end);
    start = end;
    // A lone compact reply (an array) is still sent as a batch.
    void publisher.publish(channel, chunk.length === 1 && !chunk[0]!.startsWith('[') ? chunk[0]! : `[${chunk.join(',')}]`).catch(() => undefined);
  }
}

function schedule(): void {
  if (flushScheduled) return;
  flushScheduled = true;
  setImmediate(flush);
}

function queue(from: Instance, channel: string, envelope: string): void {
  let batches = outgoing;
  if (!sharedBatches) {
    if (from.outgoing.size === 0) sending.push(from);
    batches = from.outgoing;
  }
  let parts = batches.get(channel);
  if (parts === undefined) batches.set(channel, (parts = []));
  parts.push(envelope);
  schedule();
}

function parse(message: string): Parsed[] {
  let parsed = parsedThisTurn.get(message);
  if (parsed === undefined) {
    const value = JSON.parse(message) as Parsed | Parsed[];
    parsed = Array.isArray(value) ? value : [value];
    // Compact requests (docs/protocol.md): a head with what they share, then [id, pattern, ttl, data].
    const head = parsed[0] as (Parsed & { kind: string; replyTo: string; cr?: number }) | undefined;
    if (head?.kind === 'requests') {
      parsed = (parsed.slice(1) as unknown as Array<Parsed | [string]>).map((element) =>
        Array.isArray(element) ? { kind: 'request', id: element[0], replyTo: head.replyTo, cr: head.cr } : element,
      );
    }
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
  for (const instance of instances) queue(instance, `${ns}:members`, instance.hello(randomBytes(6).toString('hex')));
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
