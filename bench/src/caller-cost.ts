// `node bench/dist/bench/src/caller-cost.js [instances]`: the CPU time of one request on a caller, in
// one process and without Redis, so that changes to the caller's hot path can be measured without the
// noise of a shared machine. A `Caller` (the library's, Nest-free; `BufferClient.send` is the same
// call) sends with `send()` on a bus that keeps everything in memory, with 64 requests in flight,
// exactly as the benchmark's caller does; the bus plays `instances` instances (default 1) that read
// compact requests: each PUBLISH of requests is answered, one event-loop turn later as a socket read
// would be, by one batch of compact replies per instance. The coalesced floor's own caller
// (systems/floor.ts, never connected) does the same on its wire beside it. What the simulated
// instances do (parse, write replies) is the same for both and is counted in both.
// `--baseline=<path to another build's dist/index.js>` measures that build's Caller beside this one,
// alternated in the same process: compare builds by that ratio, not across runs.
// `--requests=K`: requests per pass (default 40,000; fewer for hundreds of instances, whose replies
// are what a pass costs). `--only=library|baseline|floor --passes=P` runs that one system P times,
// for `valgrind --tool=callgrind node --single-threaded …`, whose instruction counts repeat from run
// to run whatever else the machine does: compare two builds by the difference of their totals.
// Beside the CPU time, each system's time inside the delivery of replies (the caller's receive path
// alone: its message handler, run synchronously as a socket read runs it, with the next request
// each completion launches; the simulated instances' work left out) in ns per reply.
import { pathToFileURL } from 'node:url';
import { Caller } from 'nestjs-redis-buffer';
import { countReplies, ECHO_PATTERN, median, onlyFilter, REPLY_DATA, REQUEST_DATA } from './common.js';
import { FloorCaller, type FloorPublisher } from './systems/floor.js';
import { MemoryBus } from './memory-bus.js';

const IN_FLIGHT = 64;
const REQUESTS_PER_ROUND = Number(process.argv.find((arg) => arg.startsWith('--requests='))?.slice(11) ?? 40_000);
const ROUNDS = 4;
const instances = Number(process.argv.slice(2).find((arg) => !arg.startsWith('--')) ?? 1);
const baselinePath = process.argv.find((arg) => arg.startsWith('--baseline='))?.slice(11);
const { only, wanted } = onlyFilter(process.argv, ['library', 'baseline', 'floor'], baselinePath);
const passes = Number(process.argv.find((arg) => arg.startsWith('--passes='))?.slice(9) ?? 5);
const namespace = 'cost';
const ids = Array.from({ length: instances }, (_, index) => `cost-i${index + 1}`);
const replyJson = JSON.stringify(REPLY_DATA);

/** Runs `work` one event-loop turn later, as the data of a socket read would be. */
const later = (work: () => void): void => void setImmediate(work);

/** The time spent delivering replies to a caller, and how many. */
class Delivery {
  ns = 0;
  replies = 0;

  /** Runs `deliver` (handing `replies` replies to the caller), timed. */
  timed(replies: number, deliver: () => void): void {
    const started = process.hrtime.bigint();
    deliver();
    this.ns += Number(process.hrtime.bigint() - started);
    this.replies += replies;
  }
}

/**
 * A bus that is always connected and plays `instances` instances of the echo pattern: each answers
 * a `who` with a hello saying `"cq":1`, a ping with a pong, and every request with a compact reply
 * (`[id, from, seq, done, data]`), one batch per instance per PUBLISH of requests.
 */
class InstancesBus extends MemoryBus {
  private readonly inc = 'costinc1';
  private helloSeq = 0;
  constructor(readonly delivery: Delivery) {
    super();
  }
  override publish(channel: string, message: string): Promise<number> {
    if (channel === `${namespace}:req:${ECHO_PATTERN}`) {
      this.answerRequests(message);
      return Promise.resolve(instances);
    }
    if (channel === `${namespace}:who`) {
      const who = JSON.parse(message) as { id: string; replyTo: string };
      later(() => {
        for (const id of ids) {
          const hello = `{"v":1,"kind":"hello","id":${JSON.stringify(who.id)},"from":"${id}","inc":"${this.inc}","seq":${this.helloSeq++},"at":${Date.now()},"patterns":["${ECHO_PATTERN}"],"events":[],"cq":1}`;
          this.emit('message', who.replyTo, hello);
        }
      });
      return Promise.resolve(instances);
    }
    if (channel.startsWith(`${namespace}:direct:`)) {
      const ping = JSON.parse(message) as { kind: string; id: string; replyTo: string };
      const from = channel.slice(`${namespace}:direct:`.length);
      if (ping.kind === 'ping') later(() => this.emit('message', ping.replyTo, `{"v":1,"kind":"pong","id":${JSON.stringify(ping.id)},"from":"${from}","inc":"${this.inc}"}`));
      return Promise.resolve(1);
    }
    return Promise.resolve(0);
  }
  override numsub(): Promise<number> {
    return Promise.resolve(instances);
  }

  /** A batch of compact requests after its head: one batch of compact replies per instance, to the head's `replyTo`. */
  private answerRequests(message: string): void {
    const batch = JSON.parse(message) as unknown[];
    const head = batch[0] as { replyTo: string };
    const requestIds = batch.slice(1).map((element) => JSON.stringify((element as unknown[])[0]));
    later(() => {
      const messages = ids.map((id) => `[${requestIds.map((requestId) => `[${requestId},"${id}",0,true,${replyJson}]`).join(',')}]`);
      this.delivery.timed(ids.length * requestIds.length, () => {
        for (const message of messages) this.emit('message', head.replyTo, message);
      });
    });
  }
}

/** The floor's replies for one batch of its requests: one batch per instance. */
function floorAnswers(message: string): { answers: string[]; replies: number } {
  const requests = JSON.parse(message) as Array<{ id: string }>;
  return { answers: ids.map((id) => `[${requests.map((request) => `{"id":${JSON.stringify(request.id)},"from":"${id}","data":${replyJson}}`).join(',')}]`), replies: ids.length * requests.length };
}

interface System {
  /** Sends one request; `done` once it completed with every reply. */
  request(done: (error: unknown, replies: number) => void): void;
  readonly delivery: Delivery;
}

/** One system's figures in one pass: medians of its rounds. */
interface Measured {
  /** CPU ns per request. */
  cpu: number;
  /** ns per reply inside the delivery of replies. */
  receive: number;
}

/** CPU ns per request: `IN_FLIGHT` requests in flight (closed loop) until `REQUESTS_PER_ROUND` have completed. */
async function measure(system: System): Promise<Measured> {
  const rounds: number[] = [];
  const receiving: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    system.delivery.ns = 0;
    system.delivery.replies = 0;
    const started = process.cpuUsage();
    await new Promise<void>((resolve, reject) => {
      let launched = 0;
      let completed = 0;
      const launch = (): void => {
        launched++;
        system.request((error, replies) => {
          if (error !== undefined && error !== null) return reject(error as Error);
          if (replies !== instances) return reject(new Error(`${replies} replies, ${instances} expected`));
          if (++completed === REQUESTS_PER_ROUND) return resolve();
          if (launched < REQUESTS_PER_ROUND) launch();
        });
      };
      for (let index = 0; index < IN_FLIGHT; index++) launch();
    });
    const used = process.cpuUsage(started);
    // The first round warms the JIT up.
    if (round > 0) {
      rounds.push(((used.user + used.system) * 1000) / REQUESTS_PER_ROUND);
      receiving.push(system.delivery.ns / system.delivery.replies);
    }
  }
  return { cpu: median(rounds), receive: median(receiving) };
}

async function startLibrary(CallerClass: typeof Caller): Promise<System & { close(): Promise<void> }> {
  const delivery = new Delivery();
  const caller = new CallerClass({ namespace, instanceId: 'cost-caller', timeout: 30_000 }, { bus: new InstancesBus(delivery), logger: { log() {}, warn() {}, error() {} } });
  await caller.connect();
  // Every instance known and reading compact requests before the first request.
  for (let deadline = Date.now() + 5000; caller.knownInstances().length < instances && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 10));
  return {
    request: (done) => countReplies(caller.send(ECHO_PATTERN, REQUEST_DATA), done),
    delivery,
    close: () => caller.close(),
  };
}

function startFloor(): System {
  let floor: FloorCaller;
  const delivery = new Delivery();
  const publisher: FloorPublisher = {
    publish: (_channel, message) => {
      const { answers, replies } = floorAnswers(message);
      later(() =>
        delivery.timed(replies, () => {
          for (const answer of answers) floor.receive(answer);
        }),
      );
      return Promise.resolve(instances);
    },
  };
  floor = new FloorCaller('redis://127.0.0.1:1', namespace, true, publisher);
  return { request: (done) => floor.request(instances, ECHO_PATTERN, REQUEST_DATA, done), delivery };
}

async function main(): Promise<void> {
  const systems: Record<string, System & { close?: () => Promise<void> }> = {};
  if (wanted('library')) systems.library = await startLibrary(Caller);
  if (baselinePath !== undefined && wanted('baseline')) {
    const baseline = (await import(pathToFileURL(baselinePath).href)) as { Caller: typeof Caller };
    systems.baseline = await startLibrary(baseline.Caller);
  }
  if (wanted('floor')) systems.floor = startFloor();
  const results: Record<string, Measured[]> = {};
  // Alternated, starting one later each pass, so that drift hits every system alike.
  const names = Object.keys(systems);
  for (let pass = 0; pass < passes; pass++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(pass + offset) % names.length]!;
      (results[name] ??= []).push(await measure(systems[name]!));
    }
  }
  for (const system of Object.values(systems)) await system.close?.();
  process.stdout.write(`CPU ns per request on the caller, ${instances} instances, ${IN_FLIGHT} in flight, ${process.version}; median of ${passes} passes (the simulated instances' work included)\n`);
  const figures = (name: string, of: keyof Measured): number[] => results[name]!.map((measured) => measured[of]);
  for (const name of names) {
    process.stdout.write(`${Math.round(median(figures(name, 'cpu'))).toString().padStart(6)}  ${name.padEnd(9)} passes ${figures(name, 'cpu').map(Math.round).join(' ')}\n`);
  }
  process.stdout.write(`ns per reply inside the delivery of replies (the caller's receive path alone), median of ${passes} passes\n`);
  for (const name of names) {
    process.stdout.write(`${median(figures(name, 'receive')).toFixed(1).padStart(8)}  ${name.padEnd(9)} passes ${figures(name, 'receive').map((value) => value.toFixed(1)).join(' ')}\n`);
  }
  if (only !== undefined) return;
  // Ratios per pass (measured back to back), then their median.
  const ratio = (a: string, b: string, of: keyof Measured): string => median(results[a]!.map((value, pass) => value[of] / results[b]![pass]![of])).toFixed(3);
  for (const of of ['cpu', 'receive'] as const) {
    process.stdout.write(`${of === 'cpu' ? 'CPU per request' : 'receive path per reply'}: library / floor ${ratio('library', 'floor', of)}x${baselinePath !== undefined ? `, library / baseline ${ratio('library', 'baseline', of)}x, baseline / floor ${ratio('baseline', 'floor', of)}x` : ''}\n`);
  }
}

void main();
