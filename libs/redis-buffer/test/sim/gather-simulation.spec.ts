import { describeFailure, faultsIn, runSchedule, type ScheduleOutcome } from './sim-run.js';
import { FAULT_CLASSES, type FaultClass } from './sim-plan.js';

/**
 * Every CI run holds the current code to every fault class on its fixed seed range;
 * `npm run test:sim:stress` runs them over many more seeds and reports what breaks, by invariant.
 */
const CI_FAULTS: readonly FaultClass[] = FAULT_CLASSES;

function faultsFromEnvironment(): ReadonlySet<FaultClass> {
  const value = process.env.SIM_FAULTS;
  if (value === undefined || value === '') return new Set(CI_FAULTS);
  if (value === 'all') return new Set(FAULT_CLASSES);
  if (value === 'none') return new Set();
  const names = value.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(FAULT_CLASSES as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`SIM_FAULTS: unknown fault classes ${unknown.join(', ')}; known: ${FAULT_CLASSES.join(', ')}, or "all", "none"`);
  return new Set(names as FaultClass[]);
}

const faults = faultsFromEnvironment();
const replay = process.env.SIM_SEED === undefined ? undefined : Number(process.env.SIM_SEED);
const schedules = replay !== undefined ? 1 : Number(process.env.SIM_SCHEDULES ?? 1500);
const firstSeed = replay ?? Number(process.env.SIM_FIRST_SEED ?? 1);

/** Request ids and incarnations are random per process; everything else in a trace follows from the seed. */
function comparable(outcome: ScheduleOutcome): string {
  return `${outcome.events} events\n${outcome.trace.join('\n')}\n${outcome.violations.map((violation) => violation.message).join('\n')}`;
}

describe('deterministic simulation of gather, membership and drain', () => {
  it(`keeps every invariant over ${schedules} seeded schedules from seed ${firstSeed}`, async () => {
    const started = performance.now();
    const failures: ScheduleOutcome[] = [];
    // invariant → fault class present in the failing schedule → how many schedules.
    const table = new Map<string, Map<string, number>>();
    const firstSeedOf = new Map<string, number>();
    let events = 0;
    for (let run = 0; run < schedules; run++) {
      const outcome = await runSchedule(firstSeed + run, faults);
      events += outcome.events;
      if (replay !== undefined) process.stdout.write(`${describeFailure(outcome, faults, Infinity)}\n`);
      if (outcome.violations.length === 0) continue;
      if (failures.length < 3) failures.push(outcome);
      else failures.push({ ...outcome, trace: [] });
      const present = faultsIn(outcome.plan);
      for (const invariant of new Set(outcome.violations.map((violation) => violation.invariant))) {
        if (!firstSeedOf.has(invariant)) firstSeedOf.set(invariant, outcome.seed);
        const row = table.get(invariant) ?? new Map<string, number>();
        table.set(invariant, row);
        for (const kind of present.length === 0 ? ['(none)'] : present) row.set(kind, (row.get(kind) ?? 0) + 1);
        row.set('*', (row.get('*') ?? 0) + 1);
      }
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const summary = [
      `simulation: ${schedules} schedules from seed ${firstSeed} (faults: ${[...faults].join(',') || 'none'}), ${events} events, ${seconds} s; ${failures.length} failing`,
      ...[...table].map(
        ([invariant, row]) =>
          `  ${invariant}: ${row.get('*')} schedules (first SIM_SEED=${firstSeedOf.get(invariant)}); with ${[...row]
            .filter(([kind]) => kind !== '*')
            .map(([kind, count]) => `${kind} ${count}`)
            .join(', ')}`,
      ),
      // Every failing seed with its invariants (the first 60), to replay or rerun one by one.
      ...(failures.length === 0 ? [] : [`  seeds: ${failures.slice(0, 60).map((failure) => `${failure.seed}[${[...new Set(failure.violations.map((violation) => violation.invariant))].join(',')}]`).join(' ')}`]),
    ].join('\n');
    process.stdout.write(`${summary}\n`);
    if (failures.length > 0 && replay === undefined) process.stdout.write(`${describeFailure(failures[0]!, faults)}\n`);
    expect(failures.map((failure) => `SIM_SEED=${failure.seed}: ${failure.violations.map((violation) => `[${violation.invariant}] ${violation.message}`).join(' | ')}`).slice(0, 10)).toEqual([]);
  }, Math.max(120_000, schedules * 200));

  it('replays a seed exactly: the same schedule twice gives the same trace', async () => {
    const every = new Set(FAULT_CLASSES);
    for (const seed of [firstSeed, firstSeed + 1, firstSeed + 2]) {
      const [first, second] = [await runSchedule(seed, every), await runSchedule(seed, every)];
      expect(first.trace.length).toBeGreaterThan(20);
      expect(comparable(second)).toBe(comparable(first));
    }
  });
});
