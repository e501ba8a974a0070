import type { MessageHandler } from '@nestjs/microservices';
import { defaultIfEmpty, lastValueFrom, type Observable } from 'rxjs';
import { DurableConsumer, type DurableSubscription } from '../core/durable/durable-consumer.js';
import { durableMetrics } from '../core/durable/durable-metrics.js';
import { resolveDurableHandlerOptions } from '../core/durable/durable-options.js';
import type { BufferLogger } from '../core/logger.js';
import type { ResolvedBufferOptions } from '../core/options.js';
import type { BufferTelemetry } from '../core/telemetry/telemetry.js';
import { DURABLE_HANDLER_EXTRAS, type DurableHandlerExtras } from './durable-pattern.decorator.js';
import { DurableContext } from './durable.context.js';

/**
 * What `RedisBufferTransport` lends to its durable half: its handlers, and Nest's way of running
 * one (processing hooks, the value / Promise / Observable a handler returns).
 */
export interface DurableHost {
  readonly options: ResolvedBufferOptions;
  readonly handlers: ReadonlyMap<string, MessageHandler>;
  readonly logger: BufferLogger;
  runWithProcessingHooks(context: DurableContext, fn: (runEndHook: () => void) => Promise<void>): Promise<unknown> | unknown;
  /** The transport's telemetry: a CONSUMER span per handler run, a child of the publisher's. */
  readonly telemetry?: BufferTelemetry;
  transformToObservable(result: unknown): Observable<unknown>;
}

/** Whether a handler was registered with `@DurablePattern` (and so is not served over pub/sub). */
export function isDurableHandler(handler: MessageHandler): boolean {
  return durableExtras(handler) !== undefined;
}

/** Starts consuming for the host's `@DurablePattern` handlers; `undefined` when it has none. */
export async function startDurableHandlers(host: DurableHost): Promise<DurableConsumer | undefined> {
  const subscriptions: DurableSubscription[] = [];
  for (const handler of host.handlers.values()) {
    const extras = durableExtras(handler);
    if (extras === undefined) continue;
    subscriptions.push({
      pattern: extras.pattern,
      options: resolveDurableHandlerOptions(host.options.durable, extras.options, extras.pattern),
      run: async (delivery) => {
        const context = new DurableContext(delivery);
        const trace = host.telemetry?.startProcess('durable', delivery.pattern, delivery.binding, delivery.group, delivery.entryId, delivery.from ?? '', delivery.headers);
        let failed: string | undefined;
        try {
          await (host.telemetry?.runInContext(trace, run) ?? run());
        } catch (error) {
          failed = (error as { code?: string } | null)?.code ?? 'error';
          throw error;
        } finally {
          host.telemetry?.endProcess(trace, failed);
        }
        async function run(): Promise<void> {
          await host.runWithProcessingHooks(context, async (runEndHook) => {
            try {
              // Nest's proxy has already passed the handler through guards, pipes, interceptors and
              // filters: a failure arrives as an Observable error carrying the filtered payload.
              await lastValueFrom(host.transformToObservable(await handler(delivery.data, context)).pipe(defaultIfEmpty(undefined)));
            } finally {
              runEndHook();
            }
          });
        }
      },
    });
  }
  if (subscriptions.length === 0) return undefined;
  const consumer = new DurableConsumer(host.options, subscriptions, host.logger);
  await consumer.start();
  host.telemetry?.observe(durableMetrics(consumer));
  const groups = subscriptions.map((subscription) => `${subscription.pattern} (${subscription.options.group})`).join(', ');
  host.logger.log(`Instance "${host.options.instanceId}" consuming durable streams: ${groups}.`);
  return consumer;
}

function durableExtras(handler: MessageHandler): DurableHandlerExtras | undefined {
  return (handler.extras as Record<string, DurableHandlerExtras> | undefined)?.[DURABLE_HANDLER_EXTRAS];
}
