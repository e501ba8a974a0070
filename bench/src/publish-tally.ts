// Counts the messages published in a system's namespace by kind (no MONITOR): requests, replies
// and each membership kind, so that the share of membership traffic stands beside every
// throughput figure. A batch counts once as a PUBLISH (under the kind of its first envelope) and
// once per envelope under each envelope's kind.
import { Redis } from 'ioredis';

export const PUBLISH_KINDS = ['request', 'reply', 'ping', 'pong', 'who', 'hello', 'bye', 'other'] as const;
export type PublishKind = (typeof PUBLISH_KINDS)[number];

/** Per kind: PUBLISHes (messages) and envelopes. */
export type KindCounts = Record<PublishKind, { messages: number; envelopes: number }>;

export function emptyKindCounts(): KindCounts {
  return Object.fromEntries(PUBLISH_KINDS.map((kind) => [kind, { messages: 0, envelopes: 0 }])) as KindCounts;
}

export function subtractKindCounts(after: KindCounts, before: KindCounts): KindCounts {
  return Object.fromEntries(PUBLISH_KINDS.map((kind) => [kind, { messages: after[kind].messages - before[kind].messages, envelopes: after[kind].envelopes - before[kind].envelopes }])) as KindCounts;
}

const KIND_MARK = '"kind":"';
const REQUESTS_HEAD = 'requests"';
const KIND_NAMES = PUBLISH_KINDS.filter((kind) => kind !== 'other').map((kind) => [kind, `${kind}"`] as const);

/** The kind named at `start` (the character after `"kind":"`), `other` for any name but the known ones. */
function kindAt(message: string, start: number): PublishKind {
  for (const [kind, quoted] of KIND_NAMES) if (message.startsWith(quoted, start)) return kind;
  return 'other';
}

/**
 * The library's compact replies or requests in a batch (docs/protocol.md, "Compact replies",
 * "Compact requests"): arrays that name no kind, each counted by the `["` that opens it, at the
 * start of the batch (`[["`) or after another element or the head (`],["`, `},["`). A value
 * holding an array of strings right after another array or object would be miscounted; the
 * benchmarks' values hold none.
 */
function compactElements(message: string): number {
  if (message.charCodeAt(0) !== 0x5b) return 0;
  let count = message.startsWith('[["') ? 1 : 0;
  for (const mark of ['],["', '},["']) for (let at = message.indexOf(mark); at >= 0; at = message.indexOf(mark, at + 4)) count++;
  return count;
}

/**
 * Classifies one message. The library's envelopes name their kind; the floors' messages do not,
 * so their channel says it (`:req` requests, `:inbox:` replies) and each envelope is one object
 * of a JSON array (counted by its `"id":` field, which every floor envelope has once).
 */
export function tallyMessage(counts: KindCounts, channel: string, message: string): void {
  let first: PublishKind | undefined;
  // A batch of the library's that opens with a compact reply.
  if (message.startsWith('[[')) first = 'reply';
  let at = message.indexOf(KIND_MARK);
  // A batch of compact requests opens with their head, `"kind":"requests"`, which is no envelope.
  const headed = at >= 0 && first === undefined && message.startsWith(REQUESTS_HEAD, at + KIND_MARK.length);
  if (headed) {
    first = 'request';
    at = message.indexOf(KIND_MARK, at + KIND_MARK.length);
  }
  while (at >= 0) {
    const start = at + KIND_MARK.length;
    // Compared in place: no string made per envelope (this runs in the measured caller).
    const kind = kindAt(message, start);
    first ??= kind;
    counts[kind].envelopes++;
    at = message.indexOf(KIND_MARK, start);
  }
  if (first !== undefined) {
    // Compact elements only ever sit in a batch of replies, or after a request head.
    if (first === 'reply' || headed) counts[first].envelopes += compactElements(message);
    counts[first].messages++;
    return;
  }
  const kind: PublishKind = channel.includes(':inbox:') ? 'reply' : channel.endsWith(':req') ? 'request' : 'other';
  let envelopes = 0;
  for (let index = message.indexOf('"id":'); index >= 0; index = message.indexOf('"id":', index + 5)) envelopes++;
  counts[kind].messages++;
  counts[kind].envelopes += Math.max(1, envelopes);
}

/**
 * Counts, in the caller's process, every PUBLISH its publisher connection sends and every message
 * its subscriber connection receives. With one caller, that is every message of the namespace:
 * the caller publishes the requests, `who`s and pings, and every reply, pong, `hello` and `bye`
 * an instance publishes goes to the caller's inbox or to the members channel it subscribes.
 * (A PSUBSCRIBEd counting connection would not do: Redis counts it in every PUBLISH's result,
 * which the floors and the library take as the number of receivers to wait for.)
 */
export function countPublishes(publisher: Redis, subscriber: Redis, cost?: TallyCost): KindCounts {
  const counts = emptyKindCounts();
  const tally =
    cost === undefined
      ? tallyMessage
      : (into: KindCounts, channel: string, message: string): void => {
          tallyMessage(into, channel, message);
          cost.note(channel, message);
        };
  const publish = publisher.publish.bind(publisher) as (channel: string, message: string) => Promise<number>;
  (publisher as unknown as { publish: (channel: string, message: string) => Promise<number> }).publish = (channel: string, message: string) => {
    tally(counts, channel, message);
    return publish(channel, message);
  };
  subscriber.on('message', (channel: string, message: string) => tally(counts, channel, message));
  return counts;
}

const SAMPLE_SIZE = 256;

/**
 * With `countPublishes(…, cost)`: the CPU time the tally itself took in the caller, so that a
 * benchmark can leave it out of the caller's figure. Timing each call does not work: a
 * `process.cpuUsage()` pair costs a few µs and reads in steps of a scheduler tick, more than the
 * tally of one message. So the messages since `reset()` are counted and a uniform random sample of
 * them kept (reservoir sampling); `measure()` replays the sample through the tally for 50 ms, CPU
 * time read around the whole replay, and returns the mean cost per message times their count. The
 * replay runs warm, so it errs low: the caller's figure errs high, not the other way.
 */
export class TallyCost {
  private messages = 0;
  private readonly sample: Array<readonly [string, string]> = [];

  note(channel: string, message: string): void {
    this.messages++;
    if (this.sample.length < SAMPLE_SIZE) this.sample.push([channel, message]);
    else {
      const slot = Math.floor(Math.random() * this.messages);
      if (slot < SAMPLE_SIZE) this.sample[slot] = [channel, message];
    }
  }

  reset(): void {
    this.messages = 0;
    this.sample.length = 0;
  }

  /** CPU µs the tally took for the messages noted since `reset()`, estimated as above. */
  measure(): number {
    if (this.messages === 0) return 0;
    const scratch = emptyKindCounts();
    let replayed = 0;
    const started = performance.now();
    const before = process.cpuUsage();
    do {
      for (const [channel, message] of this.sample) tallyMessage(scratch, channel, message);
      replayed += this.sample.length;
    } while (performance.now() - started < 50);
    const used = process.cpuUsage(before);
    return ((used.user + used.system) / replayed) * this.messages;
  }
}
