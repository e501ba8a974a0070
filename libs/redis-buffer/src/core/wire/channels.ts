/**
 * Every Redis channel name this library uses comes from here, under one namespace prefix.
 * Channels are plain (SUBSCRIBE), never patterns: Redis matches each PUBLISH against every
 * subscribed pattern, so patterns would slow down every publisher on the server.
 */
export class BufferChannels {
  private readonly inboxPrefix: string;

  constructor(readonly namespace: string) {
    this.inboxPrefix = `${namespace}:inbox:`;
  }

  /** Requests for one pattern (in channel form, see `channelPattern`): every instance with a handler for it subscribes. */
  request(pattern: string): string {
    return `${this.namespace}:req:${pattern}`;
  }

  /** Events for one pattern: every instance with an event handler for it subscribes. */
  event(pattern: string): string {
    return `${this.namespace}:evt:${pattern}`;
  }

  /** Requests and pings addressed to one instance (the `to` option), whatever their pattern. */
  direct(instanceId: string): string {
    return `${this.namespace}:direct:${instanceId}`;
  }

  /** A client's inbox: one subscription carries the replies of all its requests, routed by request id. */
  inbox(clientId: string): string {
    return `${this.inboxPrefix}${clientId}`;
  }

  /** Whether `channel` is an inbox of this namespace: the only channels an instance replies to by default. */
  isInbox(channel: string): boolean {
    return channel.length > this.inboxPrefix.length && channel.startsWith(this.inboxPrefix);
  }

  /** Instances announce joining (`hello`) and leaving (`bye`) here; callers listen. */
  members(): string {
    return `${this.namespace}:members`;
  }

  /**
   * Health probes publish here (nobody subscribes): a PUBLISH is a write, so unlike a PING it is
   * held by `CLIENT PAUSE WRITE` as requests and replies are.
   */
  probe(): string {
    return `${this.namespace}:probe`;
  }

  /** Callers ask here who is there (`who`); every instance answers with a `hello` to the caller. */
  who(): string {
    return `${this.namespace}:who`;
  }
}

/**
 * The channel form of a pattern, the same in every process and every language: a string pattern
 * as it is; any other JSON value (an object pattern such as `{ cmd: 'sum' }`) as compact JSON with
 * every object's keys sorted by Unicode code point, recursively.
 *
 * Nest's own route string sorts keys with `localeCompare`, which depends on the process's locale
 * (`{cmd, Zone}` sorts one way in one locale and another way in a code-point sort), so it cannot
 * name a channel that another process or language must compute too.
 */
export function channelPattern(pattern: unknown): string {
  if (typeof pattern === 'string') return pattern;
  if (typeof pattern === 'number') return String(pattern);
  const encoded = canonicalJson(pattern);
  if (encoded === undefined) throw new TypeError('A pattern must be a string, a number or a JSON object.');
  return encoded;
}

function canonicalJson(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item) ?? 'null').join(',')}]`;
  const record = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const key of Object.keys(record).sort(compareCodePoints)) {
    const encoded = canonicalJson(record[key]);
    if (encoded !== undefined) parts.push(`${JSON.stringify(key)}:${encoded}`);
  }
  return `{${parts.join(',')}}`;
}

/** Orders strings by Unicode code point (UTF-8 byte order), not by UTF-16 code unit or locale. */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const x = a.codePointAt(index)!;
    const y = b.codePointAt(index)!;
    if (x !== y) return x - y;
    if (x > 0xffff) index++;
  }
  return a.length - b.length;
}

/**
 * The channel form of a route string as Nest stores it for a handler (`transformPatternToRoute`):
 * JSON object routes are re-sorted by code point; anything else is the route itself. This is the
 * one function instances use for what callers compute with `channelPattern`, so both sides name
 * the same channel.
 *
 * Nest writes string values and keys between quotes with `"` and `\` escaped but control
 * characters (U+0000 to U+001F) raw, which JSON does not allow: they are escaped first, so that a
 * pattern such as `{ cmd: 'a\tb' }` maps to the channel its callers publish on.
 */
export function channelPatternOfRoute(route: string): string {
  if (!route.startsWith('{')) return route;
  try {
    return channelPattern(JSON.parse(escapeControlCharacters(route)));
  } catch {
    return route;
  }
}

// Outside string literals a Nest route holds no control character, so escaping all of them only
// touches the insides of strings.
const CONTROL_CHARACTER = /[\u0000-\u001f]/g;

function escapeControlCharacters(route: string): string {
  return route.replace(CONTROL_CHARACTER, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
