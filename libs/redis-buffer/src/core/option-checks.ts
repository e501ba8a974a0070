import { InvalidOptionsError } from './errors/invalid-options.error.js';

/**
 * Checks of single option values, shared by the module options and the durable options (which the
 * module options embed): each returns the value, or `fallback` when it is undefined, or throws an
 * `InvalidOptionsError` naming the option.
 */

/** The longest delay `setTimeout` takes (2^31 - 1 ms); a longer one fires at once. */
export const MAX_TIMER_MS = 2_147_483_647;

export function positiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new InvalidOptionsError(name, `must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionsError(name, `must be a non-negative integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function timerMs(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new InvalidOptionsError(name, `must be a number of milliseconds between 1 and ${MAX_TIMER_MS}, got ${JSON.stringify(value)}`);
  }
  return value;
}
