// The Redis seam of the in-process cost programs (responder-cost, caller-cost): a bus that keeps
// everything in memory, so that what they measure is the library's own work, without Redis.
import { EventEmitter } from 'node:events';
import type { BusClients, BusEvents, BusStatus, RedisBus } from 'nestjs-redis-buffer';

/** Always connected; takes every PUBLISH (one receiver, the message dropped); delivers what the program emits. */
export class MemoryBus extends EventEmitter<BusEvents> implements RedisBus {
  readonly status: BusStatus = 'connected';
  private readonly subscribed = new Set<string>();
  connect(): Promise<void> {
    return Promise.resolve();
  }
  publish(_channel: string, _message: string): Promise<number> {
    return Promise.resolve(1);
  }
  subscribe(list: readonly string[]): Promise<void> {
    for (const channel of list) this.subscribed.add(channel);
    return Promise.resolve();
  }
  unsubscribe(list: readonly string[]): Promise<void> {
    for (const channel of list) this.subscribed.delete(channel);
    return Promise.resolve();
  }
  numsub(channel: string): Promise<number> {
    return Promise.resolve(this.subscribed.has(channel) ? 1 : 0);
  }
  checkPermissions(): Promise<void> {
    return Promise.resolve();
  }
  ping(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  unwrap(): BusClients {
    throw new Error('a memory bus has no clients');
  }
}
