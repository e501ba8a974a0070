// Jest setup for the end-to-end suites: without TEST_LOGS=1, what Nest's logger writes in the test
// process (the library's clients and transports warning about a Redis the test killed on purpose)
// goes to a file, not to the runner's output. A suite that asserts its warnings captures them on
// top of this (see quietLogs), and puts this logger back when it is done.
import { Logger, type LoggerService } from '@nestjs/common';
import { appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SHOW_TEST_LOGS } from './captured-logs.js';

/** Where the held-back log lines go: TEST_LOG_FILE, or one file in the temporary folder. */
export const TEST_LOG_FILE = process.env.TEST_LOG_FILE ?? join(tmpdir(), 'nestjs-redis-buffer-test.log');

if (!SHOW_TEST_LOGS) {
  const write =
    (level: string) =>
    (message: unknown, ...params: unknown[]): void => {
      const context = typeof params.at(-1) === 'string' ? ` [${params.at(-1) as string}]` : '';
      appendFileSync(TEST_LOG_FILE, `${new Date().toISOString()} ${level}${context} ${String(message)}\n`);
    };
  const toFile: LoggerService = { log: write('LOG'), warn: write('WARN'), error: write('ERROR'), debug: write('DEBUG'), verbose: write('VERBOSE'), fatal: write('FATAL') };
  Logger.overrideLogger(toFile);
}
