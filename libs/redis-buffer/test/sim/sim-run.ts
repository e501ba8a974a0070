import { Prng } from './prng.js';
import { checkEnd, checkRequest, type Violation } from './sim-checker.js';
import { planSchedule, type FaultClass, type SchedulePlan } from './sim-plan.js';
import { SimWorld } from './sim-world.js';

export interface ScheduleOutcome {
  readonly seed: number;
  readonly plan: SchedulePlan;
  readonly violations: readonly Violation[];
  readonly trace: readonly string[];
  /** Events the scheduler ran. */
  readonly events: number;
}

/** Plans, runs and checks one schedule; everything in it follows from `seed` and `faults`. */
export async function runSchedule(seed: number, faults: ReadonlySet<FaultClass>): Promise<ScheduleOutcome> {
  const random = new Prng(seed);
  const plan = planSchedule(seed, random.fork(), faults);
  const world = new SimWorld(plan, random.fork());
  const violations: Violation[] = [];
  world.onRequestEnded = (request) => violations.push(...checkRequest(plan, world.record, request));
  await world.run();
  violations.push(...checkEnd(plan, world.record, { inFlight: world.callers.map((caller) => caller.requester.inFlight), thrown: world.scheduler.thrown, activeHandlers: world.activeHandlers() }));
  return { seed, plan, violations, trace: world.record.trace, events: world.scheduler.events };
}

/** A failing schedule in a few lines: its violations, then the trace around the first one. */
export function describeFailure(outcome: ScheduleOutcome, faults: ReadonlySet<FaultClass>, traceLines = 80): string {
  const lines = [`seed ${outcome.seed} (faults: ${[...faults].join(',') || 'none'}): ${outcome.violations.length} violations; replay with SIM_SEED=${outcome.seed} SIM_FAULTS=${[...faults].join(',') || 'none'}`];
  for (const violation of outcome.violations.slice(0, 8)) lines.push(`  [${violation.invariant}]${violation.request === undefined ? '' : ` r${violation.request}`}: ${violation.message}`);
  const first = outcome.violations.find((violation) => violation.request !== undefined);
  let trace = outcome.trace;
  if (first !== undefined && Number.isFinite(traceLines)) {
    // The plan lines, then what led to the first violating request's end.
    const ended = trace.findIndex((line) => line.includes(` r${first.request} `) && line.includes(' ended:'));
    const planLines = trace.filter((line) => line.includes(' plan '));
    const upTo = ended < 0 ? trace.length : ended + 1;
    trace = [...planLines, ...trace.slice(Math.max(planLines.length, upTo - traceLines), upTo)];
  } else if (Number.isFinite(traceLines)) {
    trace = trace.slice(-traceLines);
  }
  lines.push('  trace:', ...trace.map((line) => `    ${line}`));
  return lines.join('\n');
}

/** The fault classes a planned schedule actually exercises. */
export function faultsIn(plan: SchedulePlan): string[] {
  const kinds = new Set<string>(plan.faults.map((fault) => fault.kind));
  if (plan.instances.some((instance) => instance.startAt > 30)) kinds.add('lateJoin');
  if ([...plan.latency.values()].some(([, top]) => top > 15)) kinds.add('slowLinks');
  else if ([...plan.latency.values()].some(([, top]) => top > 3)) kinds.add('latency');
  if (!plan.afterStartup) kinds.add('startupRace');
  return [...kinds].sort();
}
