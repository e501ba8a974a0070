import { Logger, type LoggerService } from '@nestjs/common';
import { appendFileSync } from 'node:fs';

/**
 * Set TEST_LOGS=1 to see what the fault suites capture: the library's expected warnings and the
 * `FAULT <scenario> {...}` figures that docs/reliability.md quotes. Without it the test output stays
 * quiet, so that nothing printed there reads as a failure.
 */
export const SHOW_TEST_LOGS = process.env.TEST_LOGS === '1';

export interface CapturedLog {
  readonly level: 'log' | 'warn' | 'error' | 'debug' | 'verbose' | 'fatal';
  readonly message: string;
  /** The Nest logger context, e.g. `BufferClient`. */
  readonly context: string | undefined;
}

/** The Nest log lines written in this test process, held back instead of printed. */
export interface LogCapture {
  /** Everything captured since the last `take()`, then forgets it. */
  take(): CapturedLog[];
  /** Puts Nest's previous logger back. */
  restore(): void;
}

/**
 * Routes Nest's logger (and so the library's `BufferClient` and `RedisBufferTransport` in this
 * process) into memory, for tests that provoke warnings on purpose and assert them.
 */
export function captureLogs(): LogCapture {
  const previous = (Logger as unknown as { staticInstanceRef: LoggerService | undefined }).staticInstanceRef;
  let entries: CapturedLog[] = [];
  const record =
    (level: CapturedLog['level']) =>
    (message: unknown, ...params: unknown[]): void => {
      const context = typeof params.at(-1) === 'string' ? (params.at(-1) as string) : undefined;
      entries.push({ level, message: String(message), context });
      if (SHOW_TEST_LOGS) process.stdout.write(`captured ${level.toUpperCase()} [${context ?? '-'}] ${String(message)}\n`);
    };
  const capture: LoggerService = { log: record('log'), warn: record('warn'), error: record('error'), debug: record('debug'), verbose: record('verbose'), fatal: record('fatal') };
  Logger.overrideLogger(capture);
  return {
    take: () => {
      const taken = entries;
      entries = [];
      return taken;
    },
    restore: () => Logger.overrideLogger(previous ?? false),
  };
}

/**
 * One line of measured figures the docs quote (`FAULT <scenario> {...}`, `DURABLE <scenario> {...}`):
 * printed with TEST_LOGS=1, and appended to the file TEST_FIGURES names when set, so a run can keep
 * them without printing anything else.
 */
export function reportFigures(kind: 'FAULT' | 'DURABLE', scenario: string, values: Record<string, unknown>): void {
  const line = `${kind} ${scenario} ${JSON.stringify(values)}\n`;
  if (SHOW_TEST_LOGS) process.stdout.write(line);
  if (process.env.TEST_FIGURES) appendFileSync(process.env.TEST_FIGURES, line);
}

/** A fault scenario's measured figures (`FAULT <scenario> {...}`): see `reportFigures`. */
export function reportFault(scenario: string, values: Record<string, unknown>): void {
  reportFigures('FAULT', scenario, values);
}

/**
 * For a whole test file: captures Nest's log lines from the first test to the last, and after each
 * test fails it if a warning or error was logged that matches none of `expected`. A test asserts the
 * warnings it provokes with `warnings()` (this test's warning and error messages so far).
 */
export function quietLogs(expected: readonly RegExp[]): { warnings(): string[] } {
  let capture: LogCapture | undefined;
  let seen: CapturedLog[] = [];
  const warnings = (): string[] => {
    seen.push(...(capture?.take() ?? []));
    return seen.filter((entry) => entry.level !== 'log' && entry.level !== 'debug' && entry.level !== 'verbose').map((entry) => entry.message);
  };
  beforeAll(() => {
    capture = captureLogs();
  });
  afterEach(() => {
    const unexpected = warnings().filter((message) => !expected.some((pattern) => pattern.test(message)));
    seen = [];
    expect(unexpected).toEqual([]);
  });
  afterAll(() => capture?.restore());
  return { warnings };
}
