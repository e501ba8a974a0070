import type { BufferLogger } from '../../src/core/logger.js';
import { resolveBufferOptions, resolveCallOptions, type BufferOptions, type ResolvedBufferOptions } from '../../src/core/options.js';
import { Requester } from '../../src/core/gather/requester.js';
import { Responder } from '../../src/core/respond/responder.js';
import { BufferChannels } from '../../src/core/wire/channels.js';
import { decodeMessage } from '../../src/core/wire/decode.js';
import { Prng } from './prng.js';
import { Scheduler, SIM_EPOCH } from './scheduler.js';
import { handlerFor, untilPredicate } from './sim-handlers.js';
import { SimProcess } from './sim-process.js';
import type { SimNetwork } from './sim-bus.js';
import { SimRedis } from './sim-redis.js';
import { callerProcess, describeBehaviour, instanceProcess, type FaultPlan, type InstancePlan, type SchedulePlan } from './sim-plan.js';
import { SimRecord, type IncarnationRecord, type Interval, type RequestRecord } from './sim-record.js';

export const NAMESPACE = 'sim';

/** Instances planned to start by then are the first ones; the others join later. */
const FIRST_START_MS = 30;

/** `SIM_VERBOSE=1`: the trace also shows membership messages reaching callers and each request's receivers. */
const VERBOSE = process.env.SIM_VERBOSE === '1';

const quiet: BufferLogger = { log: () => undefined, warn: () => undefined, error: () => undefined };

interface InstanceRun {
  readonly plan: InstancePlan;
  readonly record: IncarnationRecord;
  readonly process: SimProcess;
  readonly responder: Responder;
  readonly options: BufferOptions;
}

/**
 * N instances (real `Responder`s with plain handlers) and M callers (real `Requester`s) in one
 * process, on one virtual clock, over one simulated Redis, all driven by the plan drawn from one
 * seed. It only runs and records; `checkSchedule` judges.
 */
export class SimWorld {
  readonly scheduler = new Scheduler();
  readonly redis = new SimRedis(this.scheduler);
  readonly record = new SimRecord();
  readonly network: SimNetwork;
  readonly callers: Array<{ process: SimProcess; requester: Requester }> = [];
  private readonly instances = new Map<string, InstanceRun>();
  private readonly random: Prng;
  private readonly partitioned = new Set<string>();
  private readonly incarnationCount = new Map<string, number>();
  /** Told as each request ends (or `request()` throws): the checker runs there. */
  onRequestEnded: (request: RequestRecord) => void = () => undefined;

  constructor(readonly plan: SchedulePlan, random: Prng) {
    this.random = random;
    const delays = random.fork();
    this.network = {
      delay: (process) => {
        const [low, high] = plan.latency.get(process) ?? [0.1, 2];
        // Per connection a spread of its own inside the process's range.
        const top = low + delays.float() * (high - low);
        return () => low + delays.float() * (top - low);
      },
      reconnectDelay: () => delays.int(20, 300),
      opened: (process, connection) => {
        if (!this.partitioned.has(process)) return;
        connection.up.block();
        connection.down.block();
      },
    };
  }

  async run(): Promise<void> {
    const { plan, scheduler } = this;
    const channels = new BufferChannels(NAMESPACE);
    const requestChannels = [channels.request(''), channels.direct('')];
    this.redis.observer = {
      published: (_, channel, message, receivers) => {
        if (channel === channels.members()) {
          // Its `bye` reached Redis: from now on the instance has left.
          for (const envelope of decodeMessage(message, channel).envelopes) {
            if (envelope.kind !== 'bye') continue;
            const leaving = this.instances.get(envelope.from)?.record;
            if (leaving !== undefined) leaving.goneAt ??= scheduler.now;
          }
          return;
        }
        if (!requestChannels.some((prefix) => channel.startsWith(prefix))) return;
        for (const envelope of decodeMessage(message, channel).envelopes) {
          if (VERBOSE && envelope.kind === 'ping') this.record.log(scheduler.now, `redis: ping from ${envelope.from} on ${channel} to ${receivers.length}`);
          if (envelope.kind !== 'request') continue;
          this.record.receivers.set(envelope.id, receivers.map((receiver) => receiver.process.name));
          if (VERBOSE) this.record.log(scheduler.now, `redis: ${envelope.id} on ${channel} to ${receivers.map((receiver) => receiver.process.name).join(',') || 'nobody'}`);
        }
      },
    };
    const options = (id: string): BufferOptions => ({ namespace: NAMESPACE, instanceId: id, livenessTimeout: plan.livenessTimeout, shutdownTimeout: 500 });
    const first = plan.instances.filter((instance) => instance.startAt <= FIRST_START_MS);
    this.record.log(scheduler.now, `plan livenessTimeout=${plan.livenessTimeout}, ${plan.callers} callers`);
    for (const instance of plan.instances) {
      this.record.log(scheduler.now, `plan ${instance.id} serves ${instance.patterns.join(',')}: ${describeBehaviour(instance.behaviour)}, starts at ${instance.startAt}`);
    }
    for (const instance of first) scheduler.after(instance.startAt, () => this.startInstance(instance, options(instance.id)));
    let origin: number | undefined;
    const begin = (): void => {
      // Every time below counts from here.
      origin = scheduler.now;
      if (plan.afterStartup) this.record.log(origin, 'the first instances listen: the run begins');
      for (const instance of plan.instances) if (!first.includes(instance)) scheduler.at(origin + instance.startAt, () => this.startInstance(instance, options(instance.id)));
      for (let index = 0; index < plan.callers; index++) {
        const process = new SimProcess(callerProcess(index), this, true);
        const requester = new Requester(process.bus, resolveBufferOptions(options(callerProcess(index))), quiet, process.clock);
        this.callers.push({ process, requester });
        this.watchInbox(process, requester);
        scheduler.at(
          origin + plan.callerStartAt[index]!,
          () => {
            // Until start() resolves (inbox subscribed, first `who` round over) a request may fail for want of a connection.
            const starting = this.record.troubleFrom(process.name, scheduler.now, 'starting');
            const started = (): void => void (starting.to = scheduler.now);
            requester.start().then(started, started);
          },
          process.owner,
        );
      }
      for (const request of plan.requests) {
        const record: RequestRecord = { plan: request, requestId: undefined, startedAt: undefined, endedAt: undefined, result: undefined, error: undefined, thrown: undefined, seen: 0, knownAtEnd: [] };
        this.record.requests.push(record);
        const caller = this.callers[request.caller]!;
        scheduler.at(origin + request.at, () => this.issue(caller.requester, caller.process, record, resolveBufferOptions(options(callerProcess(request.caller)))), caller.process.owner);
      }
      for (const fault of plan.faults) scheduler.at(origin + fault.at, () => this.inject(fault));
    };
    if (!plan.afterStartup) begin();
    else {
      const started = (): boolean => first.every((instance) => this.record.incarnations.some((incarnation) => incarnation.id === instance.id && (incarnation.listeningAt !== undefined || incarnation.startError !== undefined)));
      const wait = (): void => {
        if (started() || scheduler.now > SIM_EPOCH + 10_000) begin();
        else scheduler.after(1, wait);
      };
      scheduler.after(FIRST_START_MS, wait);
    }
    await scheduler.run(Infinity, () => origin !== undefined && scheduler.now >= origin + plan.endAt);
  }

  private startInstance(plan: InstancePlan, options: BufferOptions): void {
    const number = (this.incarnationCount.get(plan.id) ?? 0) + 1;
    this.incarnationCount.set(plan.id, number);
    const process = new SimProcess(instanceProcess(plan.id), this);
    const record: IncarnationRecord = { id: plan.id, process: process.name, number, patterns: plan.patterns, listeningAt: undefined, leftAt: undefined, goneAt: undefined, startError: undefined };
    this.record.incarnations.push(record);
    const responder = new Responder(options, { bus: process.bus, clock: process.clock, logger: quiet });
    for (const pattern of plan.patterns) responder.handle(pattern, handlerFor(plan.id, plan.behaviour, process.clock));
    const run: InstanceRun = { plan, record, process, responder, options };
    this.instances.set(plan.id, run);
    // listen() runs as the instance's process: its continuations are its own.
    this.scheduler.after(0, () => {
      responder.listen().then(
        () => {
          record.listeningAt = this.scheduler.now;
          this.record.log(this.scheduler.now, `${plan.id}#${number} listening`);
        },
        (error: Error) => {
          record.startError = error.message;
          record.leftAt = record.goneAt = this.scheduler.now;
          this.record.log(this.scheduler.now, `${plan.id}#${number} failed to start: ${error.message}`);
          // A supervisor starts it again (a duplicate id held by a dead process's half-open connection, say).
          if (this.instances.get(plan.id) === run && !process.owner.dead) this.scheduler.after(300, () => this.startInstance(plan, options));
        },
      );
    }, process.owner);
  }

  private issue(requester: Requester, process: SimProcess, record: RequestRecord, options: ResolvedBufferOptions): void {
    const plan = record.plan;
    const call = resolveCallOptions(options, {
      timeout: plan.timeout,
      stall: plan.stall,
      quorum: plan.quorum,
      to: plan.to,
      until: plan.until ? untilPredicate : undefined,
    });
    record.startedAt = this.scheduler.now;
    const end = (): void => {
      record.endedAt = this.scheduler.now;
      record.knownAtEnd = requester.knownInstances().map((instance) => instance.instanceId);
      const result = record.result;
      this.record.log(
        this.scheduler.now,
        `${process.name} r${plan.index} ended: ${record.error !== undefined ? `${record.error.name} ${(record.error as { code?: string }).code ?? ''} ${record.error.message}` : ''}` +
          (result === undefined ? '' : ` completedBy=${result.completedBy} expected=${result.expected} finished=${result.finished} missing=${JSON.stringify(result.missingReasons)} observers=${result.observers}`),
      );
      this.onRequestEnded(record);
    };
    try {
      const handle = requester.request<unknown>(plan.pattern, { request: plan.index }, call, {
        next: () => void record.seen++,
        complete: (result) => {
          record.result = result;
          end();
        },
        fail: (error, result) => {
          record.error = error;
          record.result = result;
          end();
        },
      });
      record.requestId = (handle as unknown as { requestId: string }).requestId;
    } catch (error) {
      record.thrown = error as Error;
      record.endedAt = this.scheduler.now;
      this.onRequestEnded(record);
    }
    this.record.log(
      this.scheduler.now,
      `${process.name} r${plan.index} ${plan.pattern}${plan.to === undefined ? '' : ` to=${plan.to}`} timeout=${plan.timeout}` +
        `${plan.stall === undefined ? '' : ` stall=${plan.stall}`}${plan.quorum === undefined ? '' : ` quorum=${plan.quorum}`}${plan.until ? ' until' : ''}${record.thrown ? ` threw ${record.thrown.message}` : ''}` +
        ` (knows ${requester.knownInstances().map((instance) => instance.instanceId).join(',') || 'none'})`,
    );
  }

  /** Records every reply that reaches a caller's process, to compare with what the caller reports. */
  private watchInbox(process: SimProcess, requester: Requester): void {
    const members = new BufferChannels(NAMESPACE).members();
    // Ahead of the requester's own listener: a request may end on the reply being recorded.
    process.bus.prependListener('message', (channel, message) => {
      if (VERBOSE && (channel === requester.inbox || channel === members)) {
        for (const envelope of decodeMessage(message, channel).envelopes) {
          if (envelope.kind === 'hello' || envelope.kind === 'bye' || envelope.kind === 'pong') {
            const number = this.record.incarnations.find((incarnation) => this.instances.get(incarnation.id)?.record === incarnation && incarnation.id === envelope.from)?.number;
            this.record.log(this.scheduler.now, `${process.name} got ${envelope.kind} from ${envelope.from} (latest #${number}) on ${channel === members ? 'members' : 'inbox'}`);
          }
        }
      }
      if (channel !== requester.inbox) return;
      for (const envelope of decodeMessage(message, channel).envelopes) {
        if (envelope.kind !== 'reply') continue;
        let byInstance = this.record.delivered.get(envelope.id);
        if (byInstance === undefined) this.record.delivered.set(envelope.id, (byInstance = new Map()));
        let replies = byInstance.get(envelope.from);
        if (replies === undefined) byInstance.set(envelope.from, (replies = { seqs: [], doneAt: undefined }));
        replies.seqs.push(envelope.seq);
        if (envelope.done && replies.doneAt === undefined) replies.doneAt = this.scheduler.now;
      }
    });
  }

  private processNamed(name: string): SimProcess | undefined {
    for (const caller of this.callers) if (caller.process.name === name) return caller.process;
    for (const run of this.instances.values()) if (run.process.name === name) return run.process;
    return undefined;
  }

  private inject(fault: FaultPlan): void {
    const { scheduler, record } = this;
    const now = scheduler.now;
    switch (fault.kind) {
      case 'pause': {
        const process = this.processNamed(fault.process);
        if (process === undefined || process.owner.dead || process.owner.paused) return;
        record.log(now, `FAULT pause ${fault.process} for ${fault.duration} ms`);
        scheduler.pause(process.owner);
        const trouble = record.troubleFrom(process.name, now, 'paused');
        const paused: Interval = { from: now, to: Infinity, what: 'paused' };
        pushTo(record.pauses, process.name, paused);
        scheduler.after(fault.duration, () => {
          scheduler.resume(process.owner);
          trouble.to = paused.to = scheduler.now;
          record.log(scheduler.now, `FAULT resume ${fault.process}`);
        });
        return;
      }
      case 'partition': {
        const process = this.processNamed(fault.process);
        if (process === undefined || this.partitioned.has(process.name)) return;
        record.log(now, `FAULT partition ${fault.process} for ${fault.duration} ms`);
        this.partitioned.add(process.name);
        const links = process.bus.opened.flatMap((connection) => [connection.up, connection.down]);
        for (const link of links) link.block();
        const trouble = record.troubleFrom(process.name, now, 'partitioned');
        scheduler.after(fault.duration, () => {
          this.partitioned.delete(process.name);
          for (const link of process.bus.opened.flatMap((connection) => [connection.up, connection.down])) link.heal();
          trouble.to = scheduler.now;
          record.log(scheduler.now, `FAULT heal ${fault.process}`);
        });
        return;
      }
      case 'redisHang': {
        if (this.redis.owner.paused) return;
        record.log(now, `FAULT redis hangs for ${fault.duration} ms`);
        scheduler.pause(this.redis.owner);
        const trouble: Interval = { from: now, to: Infinity, what: 'redis hung' };
        record.redisTrouble.push(trouble);
        scheduler.after(fault.duration, () => {
          scheduler.resume(this.redis.owner);
          trouble.to = scheduler.now;
          record.log(scheduler.now, 'FAULT redis resumes');
        });
        return;
      }
      case 'failover': {
        record.log(now, `FAULT failover: connections of ${fault.processes.join(',')} reset`);
        for (const name of fault.processes) {
          const process = this.processNamed(name);
          if (process === undefined) continue;
          // In trouble from the reset on the server (its subscriptions are gone now), not from the
          // moment its client hears of it, a link's latency later; until it is connected again.
          const trouble = record.troubleFrom(name, now, 'connections reset');
          const connected = (status: string): void => {
            if (status !== 'connected') return;
            trouble.to = scheduler.now;
            process.bus.off('status', connected);
          };
          process.bus.on('status', connected);
          for (const connection of process.bus.live) this.redis.reset(connection);
        }
        return;
      }
      case 'restart': {
        const run = this.instances.get(fault.instance);
        if (run === undefined || run.process.owner.dead) return;
        record.log(now, `FAULT kill ${fault.instance}#${run.record.number}, back in ${fault.downFor} ms`);
        this.kill(run);
        scheduler.after(fault.downFor, () => this.startInstance(run.plan, run.options));
        return;
      }
      case 'drain': {
        const run = this.instances.get(fault.instance);
        if (run === undefined || run.process.owner.dead || run.record.leftAt !== undefined) return;
        record.log(now, `FAULT drain ${fault.instance}#${run.record.number}`);
        run.record.leftAt = now;
        scheduler.after(0, () => {
          run.responder.close().then(
            () => {
              run.record.goneAt = scheduler.now;
              record.log(scheduler.now, `${fault.instance}#${run.record.number} closed`);
              if (fault.restartAfter !== undefined && this.instances.get(fault.instance) === run) scheduler.after(fault.restartAfter, () => this.startInstance(run.plan, run.options));
            },
            (error: Error) => record.log(scheduler.now, `${fault.instance} close failed: ${error.message}`),
          );
        }, run.process.owner);
        return;
      }
      case 'dropSubscriptions': {
        const run = this.instances.get(fault.instance);
        const subscriber = run?.process.bus.live.find((connection) => connection.name.endsWith(':sub'));
        if (run === undefined || subscriber === undefined) return;
        const lost = [...subscriber.channels].filter(() => this.random.chance(fault.share));
        if (lost.length === 0) return;
        record.log(now, `FAULT ${fault.instance} silently loses ${lost.join(',')}`);
        for (const channel of lost) this.redis.loseSubscription(subscriber, channel);
        // Until this connection is replaced (a reset makes ioredis subscribe again).
        const trouble = record.troubleFrom(run.process.name, now, 'subscriptions lost');
        const watch = (): void => {
          if (!subscriber.serverOpen || run.process.owner.dead) trouble.to = scheduler.now;
          else scheduler.after(10, watch);
        };
        scheduler.after(10, watch);
        return;
      }
      case 'whoRounds': {
        const caller = this.callers[fault.caller];
        if (caller === undefined) return;
        scheduler.after(0, () => {
          record.log(scheduler.now, `${caller.process.name} asks who is there`);
          caller.requester.instances().then(
            (instances) => record.log(scheduler.now, `${caller.process.name} instances(): ${instances.map((instance) => instance.instanceId).join(',') || 'none'}`),
            (error: Error) => record.log(scheduler.now, `${caller.process.name} instances() failed: ${error.message}`),
          );
        }, caller.process.owner);
        return;
      }
      case 'slotMove': {
        const channel = new BufferChannels(NAMESPACE).request(fault.pattern);
        const moved = this.redis.subscribersOf(channel).filter(() => this.random.chance(fault.share));
        if (moved.length === 0) return;
        const names = moved.map((connection) => connection.name);
        record.log(now, `FAULT slot of ${channel} moving for ${fault.duration} ms: ${fault.delivered ? 'count leaves out' : 'not counted nor delivered to'} ${names.join(',')}`);
        const troubles = moved.map((connection) => record.troubleFrom(connection.process.name, now, `slot move (${fault.delivered ? 'uncounted' : 'unsubscribed'})`));
        if (fault.delivered) {
          const miscounted: Interval = { from: now, to: Infinity, what: 'count leaves out receivers' };
          pushTo(record.countTrouble, fault.pattern, miscounted);
          troubles.push(miscounted);
        }
        if (fault.delivered) this.redis.leaveOutOfCount(channel, moved);
        else for (const connection of moved) this.redis.loseSubscription(connection, channel);
        scheduler.after(fault.duration, () => {
          if (fault.delivered) this.redis.countAgain(channel);
          else for (const connection of moved) this.redis.restoreSubscription(connection, channel);
          for (const trouble of troubles) trouble.to = scheduler.now;
          record.log(scheduler.now, `FAULT slot of ${channel} settled`);
        });
        return;
      }
    }
  }

  private kill(run: InstanceRun): void {
    run.record.leftAt ??= this.scheduler.now;
    run.record.goneAt ??= this.scheduler.now;
    run.process.owner.dead = true;
    run.process.owner.parked.length = 0;
    run.process.bus.kill();
  }

  /** Per live instance: handlers still running (none should be, long after every deadline). */
  activeHandlers(): Array<{ instance: string; active: number }> {
    return [...this.instances.values()].filter((run) => !run.process.owner.dead).map((run) => ({ instance: `${run.plan.id}#${run.record.number}`, active: run.responder.activeRequests }));
  }
}

function pushTo(map: Map<string, Interval[]>, key: string, interval: Interval): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [interval]);
  else list.push(interval);
}
