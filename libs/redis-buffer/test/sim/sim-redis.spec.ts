import { ConnectionLostError } from '../../src/core/errors/connection-lost.error.js';
import type { BusStatus } from '../../src/core/bus/redis-bus.js';
import { Prng } from './prng.js';
import { Scheduler, SIM_EPOCH, SimOwner } from './scheduler.js';
import { SimBus, type SimNetwork } from './sim-bus.js';
import { SimRedis } from './sim-redis.js';

// The simulation's own pieces, held to the Redis and Node behaviour they stand for: a simulation
// that drifts from them would check the library against a world that does not exist.

function network(random: Prng, delay: [number, number] = [0.1, 5]): SimNetwork {
  return {
    delay: () => () => delay[0] + random.float() * (delay[1] - delay[0]),
    reconnectDelay: () => 50,
    opened: () => undefined,
  };
}

function world(seed = 1, delay?: [number, number]) {
  const scheduler = new Scheduler();
  const redis = new SimRedis(scheduler);
  const random = new Prng(seed);
  const bus = (name: string): SimBus => {
    const owner = new SimOwner(name);
    return new SimBus(redis, owner, scheduler.clockFor(owner), network(random, delay));
  };
  return { scheduler, redis, bus };
}

describe('simulation: scheduler', () => {
  it('runs events by time, and events due at the same time in the order they were scheduled', async () => {
    const scheduler = new Scheduler();
    const order: string[] = [];
    scheduler.after(5, () => order.push('b1'));
    scheduler.after(1, () => order.push('a'));
    scheduler.after(5, () => order.push('b2'));
    await scheduler.run(Infinity);
    expect(order).toEqual(['a', 'b1', 'b2']);
  });

  it('runs the promise continuations an event queues before the next event', async () => {
    const scheduler = new Scheduler();
    const order: string[] = [];
    scheduler.after(1, () => void Promise.resolve().then(() => Promise.resolve()).then(() => order.push('continuation')));
    scheduler.after(1, () => order.push('next event'));
    await scheduler.run(Infinity);
    expect(order).toEqual(['continuation', 'next event']);
  });

  it("holds a paused owner's events and runs them in order on resume, before anything else due then", async () => {
    const scheduler = new Scheduler();
    const owner = new SimOwner('p');
    const order: string[] = [];
    scheduler.after(10, () => scheduler.pause(owner));
    scheduler.after(20, () => order.push('p1'), owner);
    scheduler.after(30, () => order.push('p2'), owner);
    scheduler.after(50, () => scheduler.resume(owner));
    scheduler.after(50, () => order.push('other at 50'));
    await scheduler.run(Infinity);
    expect(order).toEqual(['p1', 'p2', 'other at 50']);
    expect(owner.pausedFor).toBe(40);
  });
});

describe('simulation: Redis pub/sub', () => {
  it("keeps each connection's messages in order, whatever the delays, while different connections overtake each other", async () => {
    const { scheduler, bus } = world(7, [0.1, 20]);
    const publisher = bus('publisher');
    const subscribers = [bus('s1'), bus('s2'), bus('s3')];
    const received = subscribers.map(() => [] as string[]);
    const arrivals: string[] = [];
    subscribers.forEach((subscriber, index) =>
      subscriber.on('message', (_, message) => {
        received[index]!.push(message);
        arrivals.push(`${index}:${message}`);
      }),
    );
    scheduler.after(0, () => {
      void (async () => {
        await Promise.all([publisher.connect(), ...subscribers.map((subscriber) => subscriber.connect())]);
        await Promise.all(subscribers.map((subscriber) => subscriber.subscribe(['c'])));
        for (let index = 0; index < 50; index++) void publisher.publish('c', String(index));
      })();
    });
    await scheduler.run(Infinity);
    const sent = Array.from({ length: 50 }, (_, index) => String(index));
    for (const list of received) expect(list).toEqual(sent);
    // Interleaved across connections: not every subscriber's messages arrive as one block.
    expect(arrivals.slice(0, 50).some((arrival) => !arrival.startsWith(arrivals[0]!.slice(0, 2)))).toBe(true);
  });

  it('answers PUBLISH with the subscribers the server has when it runs the command; a lost subscription is not counted and its client is not told', async () => {
    const { scheduler, redis, bus } = world();
    const publisher = bus('publisher');
    const subscriber = bus('subscriber');
    const counts: number[] = [];
    const received: string[] = [];
    subscriber.on('message', (_, message) => received.push(message));
    scheduler.after(0, () => {
      void (async () => {
        await Promise.all([publisher.connect(), subscriber.connect()]);
        counts.push(await publisher.publish('c', 'before'));
        await subscriber.subscribe(['c']);
        counts.push(await publisher.publish('c', 'subscribed'));
        redis.loseSubscription(subscriber.live.find((connection) => connection.name.endsWith(':sub'))!, 'c');
        counts.push(await publisher.publish('c', 'lost'));
      })();
    });
    await scheduler.run(Infinity);
    expect(counts).toEqual([0, 1, 0]);
    expect(received).toEqual(['subscribed']);
    expect(subscriber.status).toBe('connected');
  });

  it('answers nothing while hung, then everything in order on resume', async () => {
    const { scheduler, redis, bus } = world();
    const publisher = bus('publisher');
    const answered: Array<[number, number]> = [];
    scheduler.after(0, () => void publisher.connect());
    scheduler.after(100, () => scheduler.pause(redis.owner));
    scheduler.after(110, () => {
      for (let index = 0; index < 3; index++) void publisher.publish('c', 'x').then(() => answered.push([index, scheduler.now]));
    });
    scheduler.after(1000, () => scheduler.resume(redis.owner));
    await scheduler.run(Infinity);
    expect(answered.map(([index]) => index)).toEqual([0, 1, 2]);
    for (const [, at] of answered) expect(at).toBeGreaterThanOrEqual(SIM_EPOCH + 1000);
  });

  it('holds what a partitioned connection sends and receives, delivers it in one burst on heal, and keeps counting the subscriber meanwhile', async () => {
    const { scheduler, bus } = world();
    const publisher = bus('publisher');
    const subscriber = bus('subscriber');
    const received: Array<[string, number]> = [];
    const counts: number[] = [];
    subscriber.on('message', (_, message) => received.push([message, scheduler.now]));
    scheduler.after(0, () => void Promise.all([publisher.connect(), subscriber.connect()]).then(() => subscriber.subscribe(['c'])));
    scheduler.after(100, () => {
      for (const connection of subscriber.opened) {
        connection.up.block();
        connection.down.block();
      }
    });
    scheduler.after(110, () => {
      for (let index = 0; index < 3; index++) void publisher.publish('c', String(index)).then((count) => counts.push(count));
    });
    scheduler.after(500, () => {
      for (const connection of subscriber.opened) {
        connection.up.heal();
        connection.down.heal();
      }
    });
    await scheduler.run(Infinity);
    expect(counts).toEqual([1, 1, 1]);
    expect(received.map(([message]) => message)).toEqual(['0', '1', '2']);
    for (const [, at] of received) expect(at).toBe(SIM_EPOCH + 500);
  });
});

describe('simulation: bus', () => {
  it('after a reset: rejects the PUBLISH in flight, reports subscriberLost and reconnecting, subscribes again, then connected', async () => {
    const { scheduler, redis, bus } = world();
    const publisher = bus('publisher');
    const subscriber = bus('subscriber');
    const statuses: BusStatus[] = [];
    const events: string[] = [];
    let inFlight: unknown;
    const counts: number[] = [];
    subscriber.on('status', (status) => statuses.push(status));
    subscriber.on('subscriberLost', () => events.push('subscriberLost'));
    scheduler.after(0, () => void Promise.all([publisher.connect(), subscriber.connect()]).then(() => subscriber.subscribe(['c'])));
    scheduler.after(100, () => {
      publisher.publish('c', 'cut').then(
        () => (inFlight = 'answered'),
        (error: unknown) => (inFlight = error),
      );
      for (const connection of [...publisher.live, ...subscriber.live]) redis.reset(connection);
    });
    scheduler.after(1000, () => void publisher.publish('c', 'after').then((count) => counts.push(count)));
    await scheduler.run(Infinity);
    expect(inFlight).toBeInstanceOf(ConnectionLostError);
    expect(events).toEqual(['subscriberLost']);
    expect(statuses).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
    expect(counts).toEqual([1]);
  });
});
