import type { Prng } from './prng.js';

/**
 * The fault classes a schedule may draw from. Each is a switch: CI runs the ones the code passes,
 * the stress script runs them all (see `SIM_FAULTS` in the spec).
 */
export const FAULT_CLASSES = [
  /** Slower connections (up to 15 ms per message), so messages on different connections overtake each other. */
  'latency',
  /** Very slow connections (up to 60 ms per message): a round trip to Redis can outlast a short timeout. */
  'slowLinks',
  /** A caller's or an instance's process stops running (SIGSTOP, a long GC, a busy event loop) and resumes. */
  'pause',
  /** One process is cut off from Redis without a reset; what was sent meanwhile arrives in a burst on heal. */
  'partition',
  /** redis-server hangs (SIGSTOP, CLIENT PAUSE): nothing it is sent is answered until it resumes. */
  'redisHang',
  /** Redis closes every connection (a failover): buses reconnect and subscribe again; what was published meanwhile is lost. */
  'failover',
  /** An instance is killed and a new process starts with the same instance id. */
  'restart',
  /** An instance shuts down gracefully (drain) while requests are in flight. */
  'drain',
  /** Instances start while requests are in flight. */
  'lateJoin',
  /**
   * Callers start, and send, while the first instances are still starting. Without it the run
   * begins once the first instances listen (instances that join later are `lateJoin`).
   */
  'startupRace',
  /** An instance's subscriptions vanish on the server and its client is not told (a replica that never had them). */
  'dropSubscriptions',
  /** A cluster slot move: for a while, PUBLISH's count (and maybe delivery) covers only part of a channel's subscribers. */
  'slotMove',
  /** Callers also ask who is there (`instances()`, an admin page) while requests are in flight. */
  'whoRounds',
] as const;

export type FaultClass = (typeof FAULT_CLASSES)[number];

export type Behaviour =
  /** One value after `delay` ms (0: returned synchronously). */
  | { readonly kind: 'value'; readonly delay: number }
  /** `count` values, the first after `delay` ms, then one every `gap` ms. */
  | { readonly kind: 'stream'; readonly delay: number; readonly count: number; readonly gap: number }
  /** Throws (synchronously at 0 ms, else a rejected promise after `delay`). */
  | { readonly kind: 'throw'; readonly delay: number };

export interface InstancePlan {
  readonly id: string;
  readonly patterns: readonly string[];
  readonly behaviour: Behaviour;
  readonly startAt: number;
}

export interface RequestPlan {
  readonly index: number;
  readonly caller: number;
  readonly at: number;
  readonly pattern: string;
  readonly timeout: number;
  readonly stall: number | undefined;
  readonly quorum: number | undefined;
  readonly until: boolean;
  readonly to: string | undefined;
}

export type FaultPlan =
  | { readonly kind: 'pause'; readonly at: number; readonly process: string; readonly duration: number }
  | { readonly kind: 'partition'; readonly at: number; readonly process: string; readonly duration: number }
  | { readonly kind: 'redisHang'; readonly at: number; readonly duration: number }
  | { readonly kind: 'failover'; readonly at: number; readonly processes: readonly string[] }
  | { readonly kind: 'restart'; readonly at: number; readonly instance: string; readonly downFor: number }
  | { readonly kind: 'drain'; readonly at: number; readonly instance: string; readonly restartAfter: number | undefined }
  | { readonly kind: 'dropSubscriptions'; readonly at: number; readonly instance: string; readonly share: number }
  | { readonly kind: 'slotMove'; readonly at: number; readonly pattern: string; readonly duration: number; readonly delivered: boolean; readonly share: number }
  | { readonly kind: 'whoRounds'; readonly at: number; readonly caller: number };

export interface SchedulePlan {
  readonly seed: number;
  readonly livenessTimeout: number;
  readonly instances: readonly InstancePlan[];
  readonly callers: number;
  readonly callerStartAt: readonly number[];
  readonly requests: readonly RequestPlan[];
  readonly faults: readonly FaultPlan[];
  /** Per process name: the range of one message's time in flight on its connections, in ms. */
  readonly latency: ReadonlyMap<string, readonly [number, number]>;
  readonly endAt: number;
  /** Whether callers, requests, faults and late instances wait for the first instances to listen (times count from then). */
  readonly afterStartup: boolean;
}

export const PATTERNS = ['alpha', 'beta'] as const;

/** The name of an instance's process, as faults and traces name it. */
export const instanceProcess = (id: string): string => id;
export const callerProcess = (index: number): string => `caller-${index}`;

/** Draws one schedule: who runs, what they do, what they are asked, and what goes wrong when. */
export function planSchedule(seed: number, random: Prng, enabled: ReadonlySet<FaultClass>): SchedulePlan {
  const livenessTimeout = random.pick([200, 300, 400]);
  const instanceCount = random.int(2, 5);
  const callers = random.int(1, 3);
  const instances: InstancePlan[] = [];
  for (let index = 0; index < instanceCount; index++) {
    const serves = PATTERNS.filter(() => random.chance(0.7));
    const patterns = serves.length > 0 ? serves : [random.pick(PATTERNS)];
    const roll = random.float();
    const behaviour: Behaviour =
      roll < 0.35
        ? { kind: 'value', delay: random.chance(0.4) ? 0 : random.int(1, 30) }
        : roll < 0.55
          ? { kind: 'value', delay: random.int(60, 900) }
          : roll < 0.8
            ? { kind: 'stream', delay: random.int(0, 20), count: random.int(1, 4), gap: random.int(1, 60) }
            : { kind: 'throw', delay: random.chance(0.5) ? 0 : random.int(1, 40) };
    const late = enabled.has('lateJoin') && index > 0 && random.chance(0.3);
    instances.push({ id: `i${index}`, patterns, behaviour, startAt: late ? random.int(200, 1800) : random.int(0, 30) });
  }
  const callerStartAt = Array.from({ length: callers }, () => random.int(0, 40));
  const requests: RequestPlan[] = [];
  const requestCount = random.int(6, 24);
  for (let index = 0; index < requestCount; index++) {
    const timeout = random.pick([80, 150, 300, 600, 1000, 1500]);
    const stall = random.chance(0.2) ? random.int(10, timeout - 1) : undefined;
    const to = random.chance(0.15) ? (random.chance(0.9) ? random.pick(instances).id : 'nobody') : undefined;
    const quorum = random.chance(0.12) ? (to === undefined ? random.int(1, 3) : 1) : undefined;
    const until = quorum === undefined && random.chance(0.1);
    requests.push({ index, caller: random.int(0, callers - 1), at: random.int(50, 2500), pattern: random.pick(PATTERNS), timeout, stall, quorum, until, to });
  }
  requests.sort((a, b) => a.at - b.at || a.index - b.index);

  const processes = [...instances.map((instance) => instanceProcess(instance.id)), ...Array.from({ length: callers }, (_, index) => callerProcess(index))];
  const latency = new Map<string, readonly [number, number]>();
  for (const name of processes) {
    const slow = enabled.has('slowLinks') && random.chance(0.25);
    const slower = enabled.has('latency') && random.chance(0.3);
    latency.set(name, slow ? [random.int(2, 20), random.int(20, 60)] : slower ? [random.int(1, 5), random.int(5, 15)] : [0.1, random.int(1, 3)]);
  }

  const faults: FaultPlan[] = [];
  const kinds = [...enabled].filter((kind) => kind !== 'latency' && kind !== 'slowLinks' && kind !== 'lateJoin' && kind !== 'startupRace');
  const faultCount = kinds.length === 0 ? 0 : random.int(0, 3);
  for (let count = 0; count < faultCount; count++) {
    const kind = random.pick(kinds);
    const at = random.int(80, 2400);
    const instance = random.pick(instances).id;
    switch (kind) {
      case 'pause':
        faults.push({ kind, at, process: random.pick(processes), duration: random.int(20, 1500) });
        break;
      case 'partition':
        faults.push({ kind, at, process: random.pick(processes), duration: random.int(20, 1500) });
        break;
      case 'redisHang':
        faults.push({ kind, at, duration: random.int(20, 1500) });
        break;
      case 'failover':
        faults.push({ kind, at, processes: random.chance(0.5) ? processes : processes.filter(() => random.chance(0.5)) });
        break;
      case 'restart':
        faults.push({ kind, at, instance, downFor: random.int(5, 600) });
        break;
      case 'drain':
        faults.push({ kind, at, instance, restartAfter: random.chance(0.5) ? random.int(50, 800) : undefined });
        break;
      case 'dropSubscriptions':
        faults.push({ kind, at, instance, share: random.pick([0.5, 1]) });
        break;
      case 'whoRounds':
        faults.push({ kind, at, caller: random.int(0, callers - 1) });
        break;
      case 'slotMove':
        faults.push({ kind, at, pattern: random.pick(PATTERNS), duration: random.int(20, 600), delivered: random.chance(0.5), share: random.pick([0.5, 1]) });
        break;
    }
  }
  faults.sort((a, b) => a.at - b.at);
  const lastRequest = requests.reduce((latest, request) => Math.max(latest, request.at + request.timeout), 0);
  const lastFault = faults.reduce((latest, fault) => Math.max(latest, fault.at + ('duration' in fault ? fault.duration : 0)), 0);
  // Time for every request to end, however long a pause or hang delayed it.
  return { seed, livenessTimeout, instances, callers, callerStartAt, requests, faults, latency, endAt: Math.max(lastRequest, lastFault) + 3000, afterStartup: !enabled.has('startupRace') };
}

/** How long `behaviour` takes from the request's arrival to its last reply. */
export function handlerDuration(behaviour: Behaviour): number {
  return behaviour.kind === 'stream' ? behaviour.delay + (behaviour.count - 1) * behaviour.gap : behaviour.delay;
}

/** The longest wait between two of its replies (stall compares against this). */
export function longestGap(behaviour: Behaviour): number {
  return behaviour.kind === 'stream' ? Math.max(behaviour.delay, behaviour.gap) : behaviour.delay;
}

export function describeBehaviour(behaviour: Behaviour): string {
  switch (behaviour.kind) {
    case 'value':
      return `value after ${behaviour.delay} ms`;
    case 'stream':
      return `stream of ${behaviour.count} from ${behaviour.delay} ms every ${behaviour.gap} ms`;
    case 'throw':
      return `throws after ${behaviour.delay} ms`;
  }
}
