import { describeFailure, runSchedule, type ScheduleOutcome } from './sim-run.js';
import { FAULT_CLASSES, type FaultClass } from './sim-plan.js';

/**
 * Fault classes the current code is held to in every CI run. The others are run by
 * `npm run test:sim:stress` (SIM_FAULTS=all), where what they break is reported by invariant.
 */
const CI_FAULTS: readonly FaultClass[] = ['latency', 'pause', 'restart', 'drain'];

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
// Up to this many failing schedules are kept to report (a stress run goes on past the first).
const keepFailures = Number(process.env.SIM_KEEP_FAILURES ?? (process.env.SIM_SCHEDULES === undefined ? 1 : 50));

describe('deterministic simulation of gather, membership and drain', () => {
  it(`keeps every invariant over ${schedules} seeded schedules from seed ${firstSeed}`, async () => {
    const started = performance.now();
    const failures: ScheduleOutcome[] = [];
    const byInvariant = new Map<string, { schedules: number; firstSeed: number }>();
    let events = 0;
    let run = 0;
    for (; run < schedules && failures.length < keepFailures; run++) {
      const outcome = await runSchedule(firstSeed + run, faults);
      events += outcome.events;
      if (replay !== undefined) process.stdout.write(`${describeFailure(outcome, faults, Number.MAX_SAFE_INTEGER)}\n`);
      if (outcome.violations.length === 0) continue;
      failures.push(outcome);
      for (const invariant of new Set(outcome.violations.map((violation) => violation.invariant))) {
        const entry = byInvariant.get(invariant);
        if (entry === undefined) byInvariant.set(invariant, { schedules: 1, firstSeed: outcome.seed });
        else entry.schedules++;
      }
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const summary = [
      `simulation: ${run} schedules from seed ${firstSeed} (faults: ${[...faults].join(',') || 'none'}), ${events} events, ${seconds} s; ${failures.length} failing`,
      ...[...byInvariant].map(([invariant, entry]) => `  ${invariant}: ${entry.schedules} schedules, first SIM_SEED=${entry.firstSeed}`),
    ].join('\n');
    process.stdout.write(`${summary}\n`);
    if (failures.length > 0 && replay === undefined) process.stdout.write(`${describeFailure(failures[0]!, faults)}\n`);
    expect(failures.map((failure) => `SIM_SEED=${failure.seed}: ${failure.violations.map((violation) => `[${violation.invariant}] ${violation.message}`).join(' | ')}`)).toEqual([]);
  }, Math.max(120_000, schedules * 200));
});
