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

/**
 * Throws an `InvalidOptionsError` for the first key of `options` that is not in `known`, naming
 * the nearest known key when one is close ("did you mean"). A misspelt option (`redsi`, `timout`)
 * must not be silently ignored: the app would run on defaults it never chose. `prefix` is the
 * path of the object within the options (`durable.`).
 */
export function rejectUnknownKeys(options: object, known: Readonly<Record<string, true>>, prefix = ''): void {
  for (const key of Object.keys(options)) {
    if (Object.prototype.hasOwnProperty.call(known, key)) continue;
    const nearest = nearestKey(key, Object.keys(known));
    throw new InvalidOptionsError(`${prefix}${key}`, `is not an option${nearest === undefined ? '' : `; did you mean "${prefix}${nearest}"?`} (known: ${Object.keys(known).join(', ')})`);
  }
}

/** Checks the seams a `Responder` or `Caller` is given (their second argument) as options are checked: `seams.<key>`. */
export function checkSeams(seams: unknown, known: Readonly<Record<string, true>>): void {
  if (typeof seams !== 'object' || seams === null) throw new InvalidOptionsError('seams', 'must be an object');
  rejectUnknownKeys(seams, known, 'seams.');
}

/** The known key closest to `key` by edit distance (case-insensitive), when close enough to be a typo. */
function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = key.toLowerCase();
  for (const candidate of known) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  // A typo changes a few characters, not most of the word.
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[0]!.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) value = Math.min(value, rows[i - 2]![j - 2]! + 1);
      rows[i]!.push(value);
    }
  }
  return rows[a.length]![b.length]!;
}
