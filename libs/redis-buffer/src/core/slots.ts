/**
 * Values in numbered slots, a freed slot taken again first: for what a long-lived object holds
 * while it is in flight (requests, PUBLISHes), added and dropped thousands of times a second.
 *
 * Why not a `Map` or a `Set`: one that gains and loses an entry per operation rebuilds its hash
 * table every few dozen operations, and V8 allocates the new table in the old generation once the
 * old one is there (as a memory-reducing GC leaves everything live when a process sits idle, or
 * any table that happens to outlive two scavenges). Each dropped table then stays in the old
 * generation until the next mark-compact, still pointing at what was in flight when it was
 * dropped, so everything that passes through outlives the young generation and is copied there:
 * a caller that had idled once spent up to twice the CPU per request afterwards (bench/NOTES.md).
 * An array of slots only ever points at what is in it now.
 */
export class Slots<T> {
  private items: Array<T | undefined> = [];
  // Free slots below `items.length`; the last freed is taken first (the same few stay in cache).
  private free: number[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The slot the next `add` takes. */
  nextSlot(): number {
    return this.free.length > 0 ? this.free[this.free.length - 1]! : this.items.length;
  }

  /** Stores `item` in the slot `nextSlot()` named, and returns that slot. */
  add(item: T): number {
    const slot = this.free.pop() ?? this.items.length;
    if (slot === this.items.length) this.items.push(item);
    else this.items[slot] = item;
    this.count++;
    return slot;
  }

  /** What slot `slot` holds (undefined for a free slot or any number that names no slot). */
  at(slot: number): T | undefined {
    return this.items[slot];
  }

  /** Frees a slot, returning what it held (undefined when it was free already). */
  delete(slot: number): T | undefined {
    const item = this.items[slot];
    if (item === undefined) return undefined;
    this.items[slot] = undefined;
    this.count--;
    // When the last of a burst is dropped, the arrays start again small: 10,000 at once leave no
    // 10,000-slot array behind.
    if (this.count === 0 && this.items.length > 64) this.clear();
    else this.free.push(slot);
    return item;
  }

  /** What the slots hold now, in a new array (safe to drop entries while going through it). */
  values(): T[] {
    const values: T[] = [];
    for (const item of this.items) if (item !== undefined) values.push(item);
    return values;
  }

  clear(): void {
    this.items = [];
    this.free = [];
    this.count = 0;
  }
}
