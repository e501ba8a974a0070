// A randomized fault schedule (in the spirit of Jepsen) against durable messaging, on real
// processes and a real redis-server (appendonly, appendfsync always). Consumer processes in three
// groups (two bound to the topic, one to a wildcard pattern that matches it) handle keyed and unkeyed entries (some with idempotency keys, some slow, some failing,
// a few poison) while a seeded schedule SIGKILLs them, freezes them past claimIdle, replaces a
// frozen one by a new process under the same instance id (the old one thawed, and running beside
// it), shuts them down, and SIGKILLs Redis and restarts it from its AOF. A checker then reads the consumers' own
// append-only logs (test/fixtures/durable-worker.ts) and asserts:
// - every acknowledged publish was handled at least once per group (poison ones: dead-lettered),
//   with the topic it was published to;
// - per group and key, runs start in publication order and never overlap (runs whose own process
//   was frozen or killed while they ran excepted: nothing can stop a handler frozen mid-run);
// - dead letters only for entries that failed maxAttempts times (ran and failed, or started and
//   never finished because their process died);
// - each consumer's counters equal what its log shows.
// The seed is printed; FAULT_SEED=<n> replays a schedule; FAULT_RUNS=<n> runs n schedules in a row
// (npm run test:stress:durable).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferClient, type DeadLetter } from 'nestjs-redis-buffer';
import { InstanceProcess } from '../support/instances.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { DURABLE_AOF, startRedis, type TestRedis } from '../support/redis-server.js';
import { waitFor } from '../support/durable.js';
import { prng } from '../support/prng.js';
import { DURABLE_WORKER, keyViolations, readLogs, runsOf, type LogLine, type Outage, type Run } from './worker-log.js';

// The seed and the schedule's figures print with TEST_LOGS=1 (npm test stays quiet); a failing
// schedule always prints its seed, and FAULT_SEED=<seed> replays it.
const say = (line: string): void => {
  if (process.env.TEST_LOGS === '1') process.stdout.write(line);
};

const CLAIM_IDLE = 800;
const MAX_ATTEMPTS = 3;
const DURABLE = { claimIdle: CLAIM_IDLE, claimInterval: 200, maxAttempts: MAX_ATTEMPTS, retryDelay: 30, maxRetryDelay: 100, maxInFlight: 8 };
const SCHEDULE_MS = Number(process.env.FAULT_SCHEDULE_MS ?? 20_000);
const RUNS = Number(process.env.FAULT_RUNS ?? 1);
const FIRST_SEED = process.env.FAULT_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.FAULT_SEED);
/** The topic published to; groups a and b are bound to it, group w to the wildcard pattern `work.*`. */
const TOPIC = 'work.job';
const PATTERNS: Readonly<Record<string, string>> = { a: TOPIC, b: TOPIC, w: 'work.*' };
const GROUPS = ['a', 'b', 'w'] as const;
/** Consumer slots: which groups each process serves (`group@pattern`, see durable-worker.ts). */
const SLOTS = ['a', 'a,w', 'b,w', 'a,b'].map((groups) => groups.split(',').map((group) => `${group}@${PATTERNS[group]}`).join(','));


interface Published {
  readonly seq: number;
  readonly id: string;
  readonly key: string | undefined;
  readonly poison: boolean;
}

interface Slot {
  process: InstanceProcess | undefined;
  frozenSince: number | undefined;
  readonly groups: string;
}

async function runSchedule(seed: number): Promise<void> {
  // Two streams from the seed: the schedule's draws do not depend on how many entries got published.
  const random = prng(seed);
  const jobs = prng(seed ^ 0x5bd1e995);
  const pick = <T>(items: readonly T[], from = random): T => items[Math.floor(from() * items.length)]!;
  say(`DURABLE fault-schedule seed=${seed} (replay: FAULT_SEED=${seed})\n`);
  const redis: TestRedis = await startRedis(DURABLE_AOF);
  const dir = mkdtempSync(join(tmpdir(), 'rb-faults-'));
  const namespace = `fs${seed}`;
  const logs: string[] = [];
  const outages: Outage[] = [];
  /** When each process was seen gone (killed, or exited after a shutdown): a run it never logged the end of ended then at the latest. */
  const exits = new Map<string, number>();
  const events: string[] = [];
  const at = (): number => Date.now() - began;
  let began = Date.now();
  let generation = 0;
  const slots: Slot[] = SLOTS.map((groups) => ({ process: undefined, frozenSince: undefined, groups }));
  /** The name each process logs as: its instance id, or for a replacement under the same id, that id and `~n`. */
  const names = new Map<InstanceProcess, string>();
  const nameOf = (process: InstanceProcess): string => names.get(process)!;
  /** Frozen processes replaced under their own id, thawed and still running beside their replacement. */
  const retired: InstanceProcess[] = [];
  const client = new BufferClient({ redis: redis.url, namespace, durable: DURABLE, timeout: 2000 });

  /** Starts the slot's next process: a new instance id, or `sameId` (a replacement under the id of the one frozen there). */
  async function spawn(slot: Slot, sameId?: string): Promise<void> {
    const instanceId = sameId ?? `w${slots.indexOf(slot) + 1}-${++generation}`;
    const logAs = sameId === undefined ? instanceId : `${sameId}~${++generation}`;
    const log = join(dir, `${logAs}.log`);
    logs.push(log);
    const started = await InstanceProcess.start({ instanceId, redisUrl: redis.url, namespace, script: DURABLE_WORKER, env: { GROUPS: slot.groups, LOG: log, LOG_AS: logAs, DURABLE: JSON.stringify(DURABLE), SHUTDOWN_TIMEOUT: '1000' } });
    names.set(started, logAs);
    slot.process = started;
  }

  function thaw(slot: Slot): void {
    if (slot.frozenSince === undefined || slot.process === undefined) return;
    slot.process.signal('SIGCONT');
    outages.push({ consumer: nameOf(slot.process), from: slot.frozenSince, to: Date.now() });
    slot.frozenSince = undefined;
  }

  const published: Published[] = [];
  let publishing = true;
  let maybe = 0;
  async function publisher(): Promise<void> {
    const keys = ['k0', 'k1', 'k2', 'k3', 'k4'];
    let seq = 0;
    while (publishing) {
      seq++;
      const key = jobs() < 0.6 ? pick(keys, jobs) : undefined;
      const idempotencyKey = jobs() < 0.3 ? `idem-${seq}` : undefined;
      const poison = jobs() < 0.02;
      const job = { seq, sleepMs: jobs() < 0.3 ? Math.floor(jobs() * 150) : 0, failUntil: poison ? 99 : jobs() < 0.1 ? 1 : undefined };
      // With an idempotency key a publish whose outcome is unknown is sent again (and once more on
      // purpose: a duplicate publish); without one it is given up, and the entry may or may not exist.
      for (let tries = 0; ; tries++) {
        try {
          const id = await client.durable.publish(TOPIC, job, { key, idempotencyKey });
          if (idempotencyKey !== undefined && jobs() < 0.3) expect(await client.durable.publish(TOPIC, job, { key, idempotencyKey })).toBe(id);
          published.push({ seq, id, key, poison });
          break;
        } catch {
          if (idempotencyKey === undefined || !publishing) {
            maybe++;
            break;
          }
          await sleep(100);
        }
      }
      await sleep(jobs() * 40);
    }
  }

  try {
    await schedule();
  } catch (error) {
    // Printed at once: with FAULT_RUNS > 1 jest reports failures only after the last schedule.
    process.stdout.write(`DURABLE fault-schedule seed=${seed} FAILED: ${(error as Error).message.slice(0, 2000)}\n`);
    throw error;
  } finally {
    publishing = false;
    for (const slot of slots) {
      thaw(slot);
      await slot.process?.stop('SIGKILL');
    }
    for (const process of retired) await process.stop('SIGKILL');
    await client.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  async function schedule(): Promise<void> {
    for (const slot of slots) await spawn(slot);
    began = Date.now();
    const publishing$ = publisher();
    while (Date.now() - began < SCHEDULE_MS) {
      await sleep(300 + random() * 900);
      const slot = pick(slots);
      const fault = pick(['kill', 'kill', 'freeze', 'freeze', 'shutdown', 'redis', 'none']);
      if (slot.frozenSince !== undefined && fault === 'freeze') {
        // A pod replaced while frozen: a new process under the same instance id takes the slot;
        // the old one is thawed and runs on beside it until the end.
        const old = slot.process!;
        events.push(`${at()} replace ${nameOf(old)} under its id`);
        await spawn(slot, old.id);
        old.signal('SIGCONT');
        outages.push({ consumer: nameOf(old), from: slot.frozenSince, to: Date.now() });
        slot.frozenSince = undefined;
        retired.push(old);
        events.push(`${at()} thaw ${nameOf(old)} beside ${nameOf(slot.process!)}`);
        continue;
      }
      if (slot.frozenSince !== undefined && fault !== 'redis') {
        events.push(`${at()} thaw ${nameOf(slot.process!)}`);
        thaw(slot);
        continue;
      }
      switch (fault) {
        case 'kill': {
          const victim = slot.process!;
          events.push(`${at()} kill ${nameOf(victim)}`);
          await victim.stop('SIGKILL');
          outages.push({ consumer: nameOf(victim), from: Date.now(), to: Infinity });
          exits.set(nameOf(victim), Date.now());
          await sleep(random() * 500);
          await spawn(slot);
          break;
        }
        case 'freeze':
          events.push(`${at()} freeze ${nameOf(slot.process!)}`);
          slot.process!.signal('SIGSTOP');
          slot.frozenSince = Date.now();
          // Thawed by a later step (this slot drawn again) or at the end: mostly past claimIdle.
          break;
        case 'shutdown': {
          const leaving = slot.process!;
          events.push(`${at()} shutdown ${nameOf(leaving)}`);
          await leaving.stop('SIGTERM');
          exits.set(nameOf(leaving), Date.now());
          await spawn(slot);
          break;
        }
        case 'redis':
          events.push(`${at()} redis restart`);
          await redis.kill();
          await sleep(100 + random() * 600);
          await redis.restart();
          break;
        default:
          break;
      }
    }
    publishing = false;
    await publishing$;
    for (const slot of slots) thaw(slot);
    events.push(`${at()} end of faults: ${published.length} published (${maybe} unknown outcomes)`);
    say(`DURABLE fault-schedule seed=${seed} events: ${events.join('; ')}\n`);

    const settled = async (): Promise<boolean> => {
      const runs = runsOf(readLogs(logs));
      for (const group of GROUPS) {
        const ok = new Set(runs.filter((run) => run.group === group && run.ok === true).map((run) => run.seq));
        const dead = new Set((await deadLetters(client, group)).map(seqOf));
        if (published.some((entry) => !ok.has(entry.seq) && !dead.has(entry.seq))) return false;
      }
      return true;
    };
    try {
      await waitFor('every acknowledged publish handled or dead-lettered in both groups', settled, 60_000);
    } catch (error) {
      const runs = runsOf(readLogs(logs));
      for (const group of GROUPS) {
        const ok = new Set(runs.filter((run) => run.group === group && run.ok === true).map((run) => run.seq));
        const dead = new Set((await deadLetters(client, group)).map(seqOf));
        const missing = published.filter((entry) => !ok.has(entry.seq) && !dead.has(entry.seq));
        if (missing.length > 0) {
          const started = missing.map((entry) => `${entry.seq}/${entry.id}/${entry.key ?? '-'}: ${runs.filter((run) => run.group === group && run.seq === entry.seq).map((run) => `${run.consumer}#${run.attempt}${run.ok === undefined ? '?' : run.ok ? '+' : '-'}`).join(',') || 'never started'}`);
          process.stdout.write(`DURABLE fault-schedule seed=${seed} group ${group} missing ${missing.length}: ${started.slice(0, 10).join('; ')}\n`);
          process.stdout.write(`DURABLE fault-schedule seed=${seed} group ${group} pending: ${JSON.stringify(await raw(redis.url, 'XPENDING', `${namespace}:durable:{${PATTERNS[group]}}`, group, '-', '+', '10'))}\n`);
        }
      }
      throw error;
    }
    await sleep(CLAIM_IDLE);
    for (const process of [...slots.map((slot) => slot.process!), ...retired.splice(0)]) {
      await process.stop('SIGTERM');
      exits.set(nameOf(process), Date.now());
    }

    const lines = readLogs(logs);
    const runs = runsOf(lines);
    const problems: string[] = [];
    for (const group of GROUPS) {
      const mine = runs.filter((run) => run.group === group);
      const dead = await deadLetters(client, group);
      const deadSeqs = new Set(dead.map(seqOf));
      const ok = new Set(mine.filter((run) => run.ok === true).map((run) => run.seq));
      for (const entry of published) {
        if (entry.poison && !deadSeqs.has(entry.seq)) problems.push(`group ${group}: poison seq ${entry.seq} not dead-lettered`);
        if (!entry.poison && !ok.has(entry.seq)) problems.push(`group ${group}: seq ${entry.seq} (${entry.id}) never handled${deadSeqs.has(entry.seq) ? ' (dead-lettered)' : ''}`);
      }
      const strayTopics = mine.filter((run) => run.topic !== TOPIC);
      if (strayTopics.length > 0) problems.push(`group ${group}: ${strayTopics.length} runs saw topic ${JSON.stringify(strayTopics[0]!.topic)}, not ${TOPIC}`);
      for (const letter of dead) problems.push(...deadLetterProblems(group, letter, mine, outages));
    }
    // A handler still running when its process exited after a shutdown ended with the process.
    problems.push(...keyViolations(runs.map((run) => (run.end === undefined && exits.has(run.consumer) ? { ...run, end: exits.get(run.consumer)! } : run)), outages));
    problems.push(...counterProblems(lines, runs));
    const counts = { published: published.length, maybe, runs: runs.length, deadLetters: (await deadLetters(client, 'a')).length + (await deadLetters(client, 'b')).length + (await deadLetters(client, 'w')).length, outages: outages.length };
    say(`DURABLE fault-schedule seed=${seed} ${JSON.stringify(counts)} problems=${problems.length}\n`);
    if (problems.length > 0) {
      // Timing is not replayed with the seed: print what a diagnosis needs now. The events (ms since
      // the start, which was at `began`), and every run of the first keys named.
      process.stdout.write(`DURABLE fault-schedule seed=${seed} began ${began}; events: ${events.join('; ')}\n`);
      const keys = [...new Set(problems.map((problem) => /^(\w+\/k\d+):/.exec(problem)?.[1]).filter((key): key is string => key !== undefined))].slice(0, 2);
      for (const line of lines) {
        if (line.e === 'start' || line.e === 'end') {
          if (keys.includes(`${line.g}/${line.key}`)) process.stdout.write(`DURABLE fault-schedule seed=${seed} ${JSON.stringify(line)}\n`);
        }
      }
    }
    // The seed stands in the diff of a failure: FAULT_SEED=<seed> replays the schedule.
    expect({ seed, problems }).toEqual({ seed, problems: [] });
  }
}

/** One command on a connection of its own, for the diagnosis printed when a schedule fails. */
async function raw(url: string, ...command: string[]): Promise<unknown> {
  const connection = rawRedis(url);
  try {
    return await connection.call(command[0]!, ...command.slice(1));
  } finally {
    connection.disconnect();
  }
}

/** A group's dead letters; the publisher's connection fails fast while Redis restarts, so this waits for it. */
async function deadLetters(client: BufferClient, group: string): Promise<DeadLetter[]> {
  for (let tries = 0; ; tries++) {
    try {
      const all: DeadLetter[] = [];
      for await (const letter of client.durable.eachDeadLetter(PATTERNS[group]!, group)) all.push(letter);
      return all;
    } catch (error) {
      if (tries >= 100) throw error;
      await sleep(100);
    }
  }
}

/** The publisher's sequence number of a dead letter's entry: the same in every group, whichever stream it came through. */
function seqOf(letter: DeadLetter): number | undefined {
  return typeof letter.entry === 'string' ? undefined : (letter.entry.data as { seq?: number } | undefined)?.seq;
}

/** A dead letter is right only for an entry that failed maxAttempts times: ran and failed, or started and died with its process. */
function deadLetterProblems(group: string, letter: DeadLetter, runs: readonly Run[], outages: readonly Outage[]): string[] {
  const own = runs.filter((run) => run.id === letter.entryId);
  const problems: string[] = [];
  if (own.some((run) => run.ok === true)) problems.push(`group ${group}: ${letter.entryId} dead-lettered although a run of it succeeded`);
  if (letter.attempts !== MAX_ATTEMPTS) problems.push(`group ${group}: ${letter.entryId} dead-lettered after ${letter.attempts} attempts, not ${MAX_ATTEMPTS}`);
  const failedOrDied = own.filter((run) => run.ok === false || outages.some((outage) => outage.consumer === run.consumer && outage.from >= run.start && (run.end === undefined || outage.from <= run.end)));
  // An attempt is counted in Redis just before its handler starts: a SIGKILL in between leaves an
  // attempt with no start line, so the log may show fewer, never more, than maxAttempts.
  if (own.length > MAX_ATTEMPTS) problems.push(`group ${group}: ${letter.entryId} started ${own.length} times, more than maxAttempts`);
  if (failedOrDied.length !== own.length) problems.push(`group ${group}: ${letter.entryId} dead-lettered with a run that neither failed nor died`);
  if (own.length === 0) problems.push(`group ${group}: ${letter.entryId} dead-lettered without any recorded run`);
  return problems;
}

/** Each cleanly closed consumer's counters against its own log lines. */
function counterProblems(lines: readonly LogLine[], runs: readonly Run[]): string[] {
  const problems: string[] = [];
  for (const closed of lines.filter((line) => line.e === 'closed')) {
    const stats = closed.stats!;
    const own = runs.filter((run) => run.consumer === closed.c);
    const logged = { runs: own.length, succeeded: own.filter((run) => run.ok === true).length, failed: own.filter((run) => run.ok === false).length };
    const counted = { runs: stats.runs, succeeded: stats.succeeded, failed: stats.failed };
    if (JSON.stringify(logged) !== JSON.stringify(counted)) problems.push(`${closed.c}: counters ${JSON.stringify(counted)}, log ${JSON.stringify(logged)}`);
    const acks = stats.handled! + stats.lateAcksRefused!;
    // An acknowledgement cut off by a Redis restart is neither accepted nor refused.
    if (stats.redisErrors === 0 ? acks !== stats.succeeded : acks > stats.succeeded!) problems.push(`${closed.c}: ${stats.handled} acknowledged + ${stats.lateAcksRefused} refused vs ${stats.succeeded} succeeded`);
  }
  return problems;
}

describe('durable: randomized fault schedule', () => {
  for (let index = 0; index < RUNS; index++) {
    const seed = FIRST_SEED + index;
    it(`seed ${seed}: nothing lost, keys in order and never side by side, honest dead letters and counters`, () => runSchedule(seed), SCHEDULE_MS + 150_000);
  }
});
