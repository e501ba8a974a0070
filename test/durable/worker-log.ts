// Reading the append-only logs of test/fixtures/durable-worker.ts processes, and the checks the
// process-level durable tests make over them.
import { existsSync, readFileSync } from 'node:fs';
import { InstanceProcess } from '../support/instances.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DURABLE_WORKER = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dist', 'durable-worker.js');

export interface LogLine {
  readonly e: 'ready' | 'start' | 'end' | 'closed';
  /** The process: its instance id, or the name it was started to log as. */
  readonly c: string;
  /** Wall-clock ms. */
  readonly t: number;
  /** µs on the host's monotonic clock, shared by its processes: orders lines of different processes within a millisecond. */
  readonly hr?: number;
  readonly g: string;
  readonly id: string;
  readonly seq: number;
  readonly key: string | undefined;
  readonly attempt: number;
  readonly run: string;
  /** The topic the entry was published to. */
  readonly topic?: string;
  readonly ok?: boolean;
  readonly aborted?: boolean;
  readonly stats?: Record<string, number>;
}

/** Starts a durable-worker process of group `a` on pattern `work`, logging to `<dir>/<logAs>.log` (`logAs`: the instance id unless given). */
export function startWorker(redisUrl: string, namespace: string, dir: string, instanceId: string, durable: Record<string, unknown>, logAs = instanceId): Promise<InstanceProcess> {
  return InstanceProcess.start({ instanceId, redisUrl, namespace, script: DURABLE_WORKER, env: { GROUPS: 'a', LOG: join(dir, `${logAs}.log`), LOG_AS: logAs, DURABLE: JSON.stringify(durable) } });
}

/** Every line of the given log files, in file order. A line cut by a SIGKILL mid-write is dropped. */
export function readLogs(files: readonly string[]): LogLine[] {
  const lines: LogLine[] = [];
  for (const file of files) {
    if (!existsSync(file)) continue;
    for (const text of readFileSync(file, 'utf8').split('\n')) {
      if (text.length === 0) continue;
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        // The last line of a process killed in the middle of an append.
      }
    }
  }
  return lines;
}

/** One handler run: its start, and its end if it had one (a run cut by SIGKILL has none). */
export interface Run {
  readonly consumer: string;
  readonly group: string;
  readonly id: string;
  readonly seq: number;
  readonly key: string | undefined;
  readonly attempt: number;
  readonly start: number;
  readonly end: number | undefined;
  /** `start` and `end` on the monotonic clock (µs), when logged: what orders runs of different processes. */
  readonly startHr?: number | undefined;
  readonly endHr?: number | undefined;
  readonly ok: boolean | undefined;
  /** The topic the entry was published to, as the handler saw it. */
  readonly topic: string | undefined;
}

export function runsOf(lines: readonly LogLine[]): Run[] {
  const ends = new Map(lines.filter((line) => line.e === 'end').map((line) => [line.run, line]));
  return lines
    .filter((line) => line.e === 'start')
    .map((line) => {
      const end = ends.get(line.run);
      return { consumer: line.c, group: line.g, id: line.id, seq: line.seq, key: line.key, attempt: line.attempt, start: line.t, end: end?.t, startHr: line.hr, endHr: end?.hr, ok: end?.ok, topic: line.topic };
    });
}

/** A span of time in which a consumer process could not run (SIGSTOP to SIGCONT, or SIGKILL onward). */
export interface Outage {
  readonly consumer: string;
  readonly from: number;
  readonly to: number;
}

/**
 * Per group and key: runs that overlap in time, and starts out of publication (seq) order. A run
 * whose process was frozen or killed while it ran is excused from the overlap check (not from the
 * order check): no library can stop a handler that is frozen mid-run, it continues when thawed;
 * what must hold is that nothing else of the key starts beside a run whose process is alive.
 *
 * Runs are ordered by the monotonic clock when every run has its stamps: in milliseconds, an entry
 * acknowledged on one process and the next of its key started on another often share one, and
 * sorting on `t` put them in log-file order, reporting an order violation (and an overlap) that
 * never happened.
 */
export function keyViolations(runs: readonly Run[], outages: readonly Outage[]): string[] {
  const problems: string[] = [];
  const byKey = new Map<string, Run[]>();
  for (const run of runs) {
    if (run.key === undefined) continue;
    const id = `${run.group}/${run.key}`;
    byKey.set(id, [...(byKey.get(id) ?? []), run]);
  }
  const interrupted = (run: Run): boolean => outages.some((outage) => outage.consumer === run.consumer && outage.from <= (run.end ?? Infinity) && outage.to >= run.start);
  // One clock for all the runs compared: the monotonic one if every run has its start on it.
  const monotonic = runs.every((run) => run.startHr !== undefined);
  const startOf = (run: Run): number => (monotonic ? run.startHr! : run.start);
  // A run's end: on the monotonic clock when logged; a run cut short has only the wall-clock time
  // its process was seen gone, compared on the wall clock.
  const startedAfterEnd = (ended: Run, next: Run): boolean =>
    monotonic && ended.endHr !== undefined ? next.startHr! >= ended.endHr : ended.end !== undefined && next.start >= ended.end;
  for (const [id, list] of byKey) {
    const sorted = [...list].sort((a, b) => startOf(a) - startOf(b));
    for (let index = 1; index < sorted.length; index++) {
      if (sorted[index]!.seq < sorted[index - 1]!.seq) problems.push(`${id}: seq ${sorted[index]!.seq} started after seq ${sorted[index - 1]!.seq} (${describe(sorted[index]!)})`);
    }
    for (let i = 0; i < sorted.length; i++) {
      const a = sorted[i]!;
      if (interrupted(a)) continue;
      for (let j = i + 1; j < sorted.length; j++) {
        const b = sorted[j]!;
        if (startedAfterEnd(a, b)) break;
        problems.push(`${id}: ${describe(b)} started while ${describe(a)} ran`);
      }
    }
  }
  return problems;
}

function describe(run: Run): string {
  return `seq ${run.seq} attempt ${run.attempt} on ${run.consumer} [${run.start}..${run.end ?? 'killed'}]`;
}
