import { TopicPatternError } from '../errors/topic-pattern.error.js';

/**
 * Topic patterns: NATS-style wildcards over dot-separated tokens.
 *
 * - A topic is split into tokens on `.`.
 * - In a pattern, a token that is exactly `*` matches any one token, and a last token that is
 *   exactly `>` matches one or more remaining tokens. `*` or `>` inside a longer token is a literal
 *   character (`a*` matches only `a*`), as in NATS.
 * - A pattern is a wildcard pattern when one of its tokens is `*` or `>`; every other string pattern
 *   is exact and matches only itself.
 * - A wildcard pattern has no empty token (no leading, trailing or doubled dot), `>` only last, and
 *   at most `MAX_TOPIC_TOKENS` tokens; anything else is refused with `TopicPatternError`.
 * - A topic (what is published) is matched token by token and literally: a `*` or `>` token in a
 *   topic is just that text, matched by a wildcard or by the same literal token. A wildcard never
 *   matches an empty token: `order.*` does not match `order.` and `order.>` does not match `order..x`.
 *
 * Chosen over AMQP's `*`/`#` because `#` also matches zero tokens, which makes `order.#` match the
 * topic `order` itself: one more rule to remember and to implement identically in every language.
 */
export const MAX_TOPIC_TOKENS = 128;

const ONE = '*';
const REST = '>';


/** Whether `pattern` uses a wildcard token (`*` anywhere, `>` last), so it must be matched rather than compared. */
export function isWildcardPattern(pattern: unknown): pattern is string {
  if (typeof pattern !== 'string') return false;
  const tokens = pattern.split('.');
  return tokens.includes(ONE) || tokens.includes(REST);
}

/** A compiled wildcard pattern. Exact patterns need no compiling: compare them with `===`. */
export class TopicPattern {
  private readonly tokens: readonly string[];
  private readonly rest: boolean;

  constructor(readonly pattern: string) {
    const tokens = pattern.split('.');
    if (tokens.length > MAX_TOPIC_TOKENS) throw new TopicPatternError(pattern, `more than ${MAX_TOPIC_TOKENS} tokens`);
    for (let index = 0; index < tokens.length; index++) {
      const token = tokens[index]!;
      if (token === '') throw new TopicPatternError(pattern, 'an empty token (a leading, trailing or doubled ".")');
      if (token === REST && index !== tokens.length - 1) throw new TopicPatternError(pattern, '">" is allowed only as the last token');
    }
    this.rest = tokens[tokens.length - 1] === REST;
    this.tokens = this.rest ? tokens.slice(0, -1) : tokens;
    if (!this.rest && !this.tokens.includes(ONE)) throw new TopicPatternError(pattern, 'no "*" or ">" token; an exact pattern needs no compiling');
  }

  /** Whether `topic` matches, token by token. */
  matches(topic: string): boolean {
    const tokens = this.tokens;
    let start = 0;
    for (let index = 0; index < tokens.length; index++) {
      if (start > topic.length) return false;
      let end = topic.indexOf('.', start);
      if (end === -1) end = topic.length;
      const token = tokens[index]!;
      if (token === ONE ? end === start : !sameToken(topic, start, end, token)) return false;
      start = end + 1;
    }
    // Without `>`, the topic must end exactly here (`start` one past its end). With `>`, at least one
    // more token must follow, none of them empty.
    if (!this.rest) return start === topic.length + 1;
    return start < topic.length && !hasEmptyToken(topic, start);
  }
}

function hasEmptyToken(topic: string, start: number): boolean {
  return topic[start] === '.' || topic.endsWith('.') || topic.includes('..', start);
}

function sameToken(topic: string, start: number, end: number, token: string): boolean {
  return end - start === token.length && topic.startsWith(token, start);
}

/** `pattern` matches `topic`: `===` for exact patterns, token matching for wildcard ones. */
export function topicMatches(pattern: string, topic: string): boolean {
  return isWildcardPattern(pattern) ? new TopicPattern(pattern).matches(topic) : pattern === topic;
}

/**
 * Orders two patterns that match the same topic, most specific first: compared token by token from
 * the left, the first position where their kinds differ decides (a literal token before `*`, `*`
 * before `>`); an exact pattern (all literal) is thus before every wildcard. What is left (patterns
 * of the same kinds everywhere, which cannot both match one topic unless equal) is ordered by
 * length, longer first, then by code point, so the order is total and the same in every language.
 */
export function compareSpecificity(a: string, b: string): number {
  const left = a.split('.');
  const right = b.split('.');
  const length = Math.min(left.length, right.length);
  for (let index = 0; index < length; index++) {
    const difference = tokenRank(left[index]!) - tokenRank(right[index]!);
    if (difference !== 0) return difference;
  }
  if (left.length !== right.length) return right.length - left.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

function tokenRank(token: string): number {
  return token === ONE ? 1 : token === REST ? 2 : 0;
}

/**
 * Checks a handler's pattern before it is bound: a wildcard string pattern must be valid
 * (`TopicPattern`); an object pattern may not hold a wildcard string anywhere (wildcards are for
 * string patterns: an object pattern is matched whole, by its canonical JSON), so that
 * `{ cmd: 'order.*' }` fails at start-up rather than silently matching only itself.
 */
export function checkBindingPattern(pattern: unknown): void {
  if (typeof pattern === 'string') {
    if (isWildcardPattern(pattern)) new TopicPattern(pattern);
    return;
  }
  const wildcard = findWildcardValue(pattern, 0);
  if (wildcard !== undefined) {
    throw new TopicPatternError(wildcard, 'wildcards ("*", ">") are for string patterns only; an object pattern is matched whole, so use a string pattern such as "order.*"');
  }
}

function findWildcardValue(value: unknown, depth: number): string | undefined {
  if (isWildcardPattern(value)) return value;
  if (value === null || typeof value !== 'object' || depth > 32) return undefined;
  for (const item of Array.isArray(value) ? value : Object.values(value as Record<string, unknown>)) {
    const found = findWildcardValue(item, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** A compiled pattern if `pattern` is a valid wildcard pattern; `undefined` for exact or invalid ones (what another process announces is never trusted to be valid). */
export function compileWildcard(pattern: string): TopicPattern | undefined {
  if (!isWildcardPattern(pattern)) return undefined;
  try {
    return new TopicPattern(pattern);
  } catch {
    return undefined;
  }
}
