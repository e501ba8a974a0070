import { Slots } from '../slots.js';

/**
 * A caller's requests in flight, found by the id a reply carries. Each request takes a slot (see
 * `Slots`, and why not a Map there), and its id names the slot: `<prefix><slot in base 36>.<sequence
 * number in base 36>`. A reply reaches its request with one array read and one string comparison;
 * an id this caller never gave, or gave to a request that has ended (whose slot another request
 * may hold now), matches nothing: the sequence number makes every id unique.
 */
export class InFlightRequests<R extends { readonly requestId: string }, T> {
  private readonly requests = new Slots<R>();
  // Each request's span, with an OpenTelemetry SDK only: by slot beside the request, not a field
  // on every request.
  private traces: Array<T | undefined> | undefined;
  private sequence = 0;

  constructor(private readonly prefix: string) {}

  get size(): number {
    return this.requests.size;
  }

  /** The id of the next request to be added; `add` it before asking for another. */
  nextId(): string {
    return `${this.prefix}${this.requests.nextSlot().toString(36)}.${(this.sequence++).toString(36)}`;
  }

  /** Adds a request whose id came from the last `nextId()`, with its span if traced. */
  add(request: R, trace?: T): void {
    const slot = this.slotOf(request.requestId);
    if (slot < 0 || slot !== this.requests.nextSlot()) throw new Error(`request id "${request.requestId}" is not the last nextId() (one id per request, added before the next is asked for)`);
    this.requests.add(request);
    if (trace !== undefined) (this.traces ??= [])[slot] = trace;
  }

  get(id: string): R | undefined {
    const request = this.requests.at(this.slotOf(id));
    return request !== undefined && request.requestId === id ? request : undefined;
  }

  /** Drops a request, returning its span (undefined when it had none or was not here). */
  delete(id: string): T | undefined {
    const slot = this.slotOf(id);
    const request = this.requests.at(slot);
    if (request === undefined || request.requestId !== id) return undefined;
    this.requests.delete(slot);
    const traces = this.traces;
    if (traces === undefined || slot >= traces.length) return undefined;
    const trace = traces[slot];
    traces[slot] = undefined;
    if (this.requests.size === 0) this.traces = undefined;
    return trace;
  }

  /** The requests in flight now, in a new array (safe to end them while going through it). */
  values(): R[] {
    return this.requests.values();
  }

  clear(): void {
    this.requests.clear();
    this.traces = undefined;
  }

  /** The slot an id names, or -1 when it names none. */
  private slotOf(id: string): number {
    const start = this.prefix.length;
    let slot = 0;
    // At most 6 base-36 digits (over two billion slots): a longer number is no id of this caller.
    for (let index = start; index < id.length && index <= start + 6; index++) {
      const code = id.charCodeAt(index);
      if (code === 46 /* . */) return index === start ? -1 : slot;
      if (code >= 48 && code <= 57) slot = slot * 36 + code - 48;
      else if (code >= 97 && code <= 122) slot = slot * 36 + code - 87;
      else return -1;
    }
    return -1;
  }
}
