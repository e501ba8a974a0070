// The checker of the process-level durable tests (worker-log.ts) on log files as
// test/fixtures/durable-worker.ts writes them: what it calls a per-key order violation or an
// overlap must be one, also when two processes log within one millisecond.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyViolations, readLogs, runsOf, type LogLine } from './worker-log.js';

describe('the durable worker-log checker', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'rb-worker-log-'));
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes each consumer's lines to its own file, in the order given (files in the order of `consumers`). */
  function logs(consumers: Record<string, Array<Partial<LogLine>>>): string[] {
    return Object.entries(consumers).map(([consumer, lines]) => {
      const file = join(dir, `${consumer}.log`);
      writeFileSync(file, lines.map((line) => JSON.stringify({ g: 'w', key: 'k4', attempt: 1, topic: 'work.job', c: consumer, ...line })).join('\n') + '\n');
      return file;
    });
  }

  /** One run: its start and end lines. */
  function run(seq: number, consumer: string, number: number, start: [t: number, hr?: number], end: [t: number, hr?: number]): Array<Partial<LogLine>> {
    const base = { id: `1796472337982-${seq}`, seq, run: `${consumer}#${number}` };
    return [
      { e: 'start', ...base, t: start[0], ...(start[1] === undefined ? {} : { hr: start[1] }) },
      { e: 'end', ...base, ok: true, t: end[0], ...(end[1] === undefined ? {} : { hr: end[1] }) },
    ];
  }

  it('an entry acknowledged on one process and the next of its key started on another within the same millisecond are in order, whatever the order of the log files', () => {
    // As seed 7308 logged them: seq 689 ran and ended on w3-9, then seq 693 (the next of key k4)
    // started on w2-5, all in millisecond ...822; w2-5's file is read first.
    const files = logs({
      'w2-5': run(693, 'w2-5', 383, [1796472340822, 6_000_400], [1796472340823, 6_000_900]),
      'w3-9': run(689, 'w3-9', 333, [1796472340822, 6_000_100], [1796472340822, 6_000_150]),
    });
    expect(keyViolations(runsOf(readLogs(files)), [])).toEqual([]);
  });

  it('still finds a start out of publication order, and a run started beside another, within one millisecond', () => {
    const reversed = logs({
      'w2-5': run(693, 'w2-5', 383, [1796472340822, 6_000_100], [1796472340822, 6_000_150]),
      'w3-9': run(689, 'w3-9', 333, [1796472340822, 6_000_400], [1796472340823, 6_000_900]),
    });
    expect(keyViolations(runsOf(readLogs(reversed)), [])).toEqual(['w/k4: seq 689 started after seq 693 (seq 689 attempt 1 on w3-9 [1796472340822..1796472340823])']);
    rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'rb-worker-log-'));
    const beside = logs({
      'w3-9': run(689, 'w3-9', 333, [1796472340822, 6_000_100], [1796472340822, 6_000_500]),
      'w2-5': run(693, 'w2-5', 383, [1796472340822, 6_000_400], [1796472340823, 6_000_900]),
    });
    expect(keyViolations(runsOf(readLogs(beside)), [])).toEqual(['w/k4: seq 693 attempt 1 on w2-5 [1796472340822..1796472340823] started while seq 689 attempt 1 on w3-9 [1796472340822..1796472340822] ran']);
  });

  it('logs without the monotonic stamp are compared in milliseconds, a same-millisecond end and start being sequential', () => {
    const files = logs({
      'w3-9': run(689, 'w3-9', 333, [1796472340820], [1796472340822]),
      'w2-5': run(693, 'w2-5', 383, [1796472340822], [1796472340823]),
    });
    expect(keyViolations(runsOf(readLogs(files)), [])).toEqual([]);
  });
});
