// `node bench/dist/bench/src/responder-cost.js [instances]`: the CPU time of one handler run on a
// responder, in one process and without Redis, so that changes to the responder's hot path can be
// measured without the noise of a shared machine: a `Responder` (the library's, Nest-free) on a bus
// that keeps everything in memory is given batches of 64 requests exactly as the library's caller
// encodes them (system "library": compact requests, as to instances that read them; "objects": the
// object form), and answers each with the benchmark's reply; the coalesced floor's own responders
// (systems/floor.ts, never connected) do the same work on their wire format beside it. Several instances
// (default 16) each parse every batch, as the benchmark's responder process does at N = 16.
// `--baseline=<path to another build's dist/index.js>` measures that build's Responder beside this
// one, alternated in the same process: compare builds by that ratio, not across runs.
// `--only=library|objects|baseline|floor` measures that one system alone (for a CPU profile).
import { pathToFileURL } from 'node:url';
import { BufferChannels, Responder } from 'nestjs-redis-buffer';
import { ECHO_PATTERN, median, onlyFilter, REPLY_DATA, REQUEST_DATA } from './common.js';
import { FloorResponder, type FloorPublisher } from './systems/floor.js';
import { MemoryBus } from './memory-bus.js';

const BATCH = 64;
const ROUNDS = 4;
const BATCHES_PER_ROUND = 150;
const instances = Number(process.argv.slice(2).find((arg) => !arg.startsWith('--')) ?? 16);
const baselinePath = process.argv.find((arg) => arg.startsWith('--baseline='))?.slice(11);
const { only, wanted } = onlyFilter(process.argv, ['library', 'objects', 'baseline', 'floor'], baselinePath);
const namespace = 'cost';
const channels = new BufferChannels(namespace);

const caller = 'bench-caller-1234';
const inbox = channels.inbox(`${caller}.AbCdEfGh`);
let nextId = 0;

/** A batch of requests as the library's caller writes them to instances that read compact requests: a head, then `[id, pattern, ttl, data]`. */
function libraryBatch(): string {
  const parts: string[] = [];
  for (let index = 0; index < BATCH; index++) {
    const id = (nextId++).toString(36).padStart(8, 'a');
    parts.push(`["${id}","${ECHO_PATTERN}",4998,${JSON.stringify(REQUEST_DATA)}]`);
  }
  return `[{"v":1,"kind":"requests","from":"${caller}","replyTo":"${inbox}","cr":1,"sent":${Date.now()}},${parts.join(',')}]`;
}

/** The same batch as objects, as the library's caller writes them to instances that do not (`ttl` and `sent` first, no headers). */
function objectBatch(): string {
  const parts: string[] = [];
  const now = Date.now();
  for (let index = 0; index < BATCH; index++) {
    const id = (nextId++).toString(36).padStart(8, 'a');
    parts.push(`{"ttl":4998,"sent":${now},"v":1,"kind":"request","cr":1,"id":"${id}","pattern":"${ECHO_PATTERN}","from":"${caller}","replyTo":"${inbox}","data":${JSON.stringify(REQUEST_DATA)}}`);
  }
  return `[${parts.join(',')}]`;
}

/** The same batch on the coalesced floor's wire. */
function floorBatch(): string {
  const parts: string[] = [];
  for (let index = 0; index < BATCH; index++) {
    const id = (nextId++).toString(36).padStart(8, 'a');
    parts.push(`{"id":"${id}","replyTo":"${inbox}","p":"${ECHO_PATTERN}","data":${JSON.stringify(REQUEST_DATA)}}`);
  }
  return `[${parts.join(',')}]`;
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** CPU ns per handler run: `deliver` hands one batch to every instance; one batch per event-loop turn. */
async function measure(make: () => string, deliver: (message: string) => void): Promise<number> {
  const rounds: number[] = [];
  const messages = Array.from({ length: BATCHES_PER_ROUND }, make);
  for (let round = 0; round < ROUNDS; round++) {
    const started = process.cpuUsage();
    for (const message of messages) {
      deliver(message);
      await turn();
    }
    await turn();
    const used = process.cpuUsage(started);
    // The first round warms the JIT up.
    if (round > 0) rounds.push(((used.user + used.system) * 1000) / (BATCHES_PER_ROUND * BATCH * instances));
  }
  return median(rounds);
}

/** `instances` Responders of one build, each on its own memory bus, answering the echo pattern. */
async function startLibrary(ResponderClass: typeof Responder): Promise<{ deliver: (message: string) => void; close: () => Promise<void> }> {
  const requestChannel = channels.request(ECHO_PATTERN);
  const buses: MemoryBus[] = [];
  const responders: Responder[] = [];
  for (let index = 0; index < instances; index++) {
    const bus = new MemoryBus();
    const responder = new ResponderClass({ namespace, instanceId: `cost-r${index + 1}`, maxConcurrentHandlers: 1024 }, { bus, logger: { log() {}, warn() {}, error() {} } });
    responder.handle(ECHO_PATTERN, () => REPLY_DATA);
    await responder.listen();
    buses.push(bus);
    responders.push(responder);
  }
  return {
    deliver: (message) => {
      for (const bus of buses) bus.emit('message', requestChannel, message);
    },
    close: async () => {
      for (const responder of responders) await responder.close();
    },
  };
}

async function main(): Promise<void> {
  const systems: Record<string, { deliver: (message: string) => void; close?: () => Promise<void>; make: () => string }> = {};
  if (wanted('library')) systems.library = { ...(await startLibrary(Responder)), make: libraryBatch };
  if (wanted('objects')) systems.objects = { ...(await startLibrary(Responder)), make: objectBatch };
  if (baselinePath !== undefined && wanted('baseline')) {
    const baseline = (await import(pathToFileURL(baselinePath).href)) as { Responder: typeof Responder };
    // Objects: a build before compact requests cannot read them (compare it with "objects").
    systems.baseline = { ...(await startLibrary(baseline.Responder)), make: objectBatch };
  }
  // The floor's own responders (systems/floor.ts), never connected: their replies go to memory.
  const nowhere: FloorPublisher = { publish: () => Promise.resolve(1) };
  const floors = Array.from({ length: instances }, (_, index) => new FloorResponder('redis://127.0.0.1:1', namespace, `floor-r${index + 1}`, true, nowhere));
  if (wanted('floor')) {
    systems.floor = {
      make: floorBatch,
      deliver: (message) => {
        for (const floor of floors) floor.receive(message);
      },
    };
  }
  const results: Record<string, number[]> = {};
  // Alternated, starting one later each pass, so that drift hits every system alike.
  const names = Object.keys(systems);
  for (let pass = 0; pass < 5; pass++) {
    for (let offset = 0; offset < names.length; offset++) {
      const name = names[(pass + offset) % names.length]!;
      (results[name] ??= []).push(await measure(systems[name]!.make, systems[name]!.deliver));
    }
  }
  for (const system of Object.values(systems)) await system.close?.();
  process.stdout.write(`CPU ns per handler run, ${instances} instances in one process, batches of ${BATCH}, ${process.version}; median of 5 passes\n`);
  for (const name of names) {
    process.stdout.write(`${Math.round(median(results[name]!)).toString().padStart(6)}  ${name.padEnd(9)} passes ${results[name]!.map(Math.round).join(' ')}\n`);
  }
  if (only !== undefined) return;
  // Ratios per pass (measured back to back), then their median.
  const ratio = (a: string, b: string): string => median(results[a]!.map((value, pass) => value / results[b]![pass]!)).toFixed(3);
  process.stdout.write(`library / floor ${ratio('library', 'floor')}x, objects / floor ${ratio('objects', 'floor')}x, library / objects ${ratio('library', 'objects')}x${baselinePath !== undefined ? `, library / baseline ${ratio('library', 'baseline')}x, baseline / floor ${ratio('baseline', 'floor')}x` : ''}\n`);
}

void main();
