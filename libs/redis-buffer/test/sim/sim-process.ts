import type { Clock } from '../../src/core/clock.js';
import { type Scheduler, SimOwner } from './scheduler.js';
import { SimBus, type SimNetwork } from './sim-bus.js';
import type { SimRedis } from './sim-redis.js';
import type { Interval, SimRecord } from './sim-record.js';

/** What a simulated process needs of the world it runs in. */
export interface SimProcessWorld {
  readonly scheduler: Scheduler;
  readonly redis: SimRedis;
  readonly network: SimNetwork;
  readonly record: SimRecord;
}

/** One simulated OS process: its own event-loop owner, clock and Redis connections. */
export class SimProcess {
  readonly owner: SimOwner;
  readonly clock: Clock;
  readonly bus: SimBus;

  /** `connectingIsTrouble`: for a caller, requests sent before its first connection may fail, and that is no fault of theirs. */
  constructor(readonly name: string, world: SimProcessWorld, connectingIsTrouble = false) {
    this.owner = new SimOwner(name);
    this.clock = world.scheduler.clockFor(this.owner);
    this.bus = new SimBus(world.redis, this.owner, this.clock, world.network);
    let down: Interval | undefined;
    // Ahead of the code under test's listeners: it may end requests on these very events.
    this.bus.prependListener('subscriberLost', () => {
      world.record.log(world.scheduler.now, `${name} subscriber lost`);
      down ??= world.record.troubleFrom(name, world.scheduler.now, 'subscriber lost');
    });
    this.bus.prependListener('status', (status) => {
      world.record.log(world.scheduler.now, `${name} bus ${status}`);
      if (status === 'connected') {
        if (down !== undefined) down.to = world.scheduler.now;
        down = undefined;
      } else if (down === undefined && (status !== 'connecting' || connectingIsTrouble)) {
        down = world.record.troubleFrom(name, world.scheduler.now, `connection ${status}`);
      }
    });
  }
}
