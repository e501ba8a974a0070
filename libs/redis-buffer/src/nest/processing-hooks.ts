import type { BaseRpcContext } from '@nestjs/microservices';

/** Closes the processing span opened for one message; safe to call more than once. */
export type ProcessingEndHook = () => void;

type StartHook = (transportId: unknown, context: BaseRpcContext, done: () => Promise<unknown>) => unknown;
type EndHook = (transportId: unknown, context: BaseRpcContext) => void;

/**
 * The members of Nest's `Server` this helper looks for. Which ones exist depends on the installed
 * `@nestjs/microservices`, so each is optional and tested at run time, never assumed from the types.
 */
interface ProcessingHookHost {
  readonly transportId?: unknown;
  /** `@nestjs/microservices` 12.0.4 and later. */
  runWithProcessingHooks?: (context: BaseRpcContext, fn: (runEndHook: ProcessingEndHook) => Promise<void>) => unknown;
  /** `@nestjs/microservices` 11.1.6 and later (set with `setOnProcessingStartHook`). */
  onProcessingStartHook?: StartHook;
  onProcessingEndHook?: EndHook;
}

/** Which of Nest's processing-hook APIs `runWithHooks` uses on this server. */
export type ProcessingHookSupport = 'runWithProcessingHooks' | 'processingHooks' | 'none';

/** Tells which branch `runWithHooks` takes for `server`, for tests and diagnostics. */
export function processingHookSupport(server: object): ProcessingHookSupport {
  const host = server as ProcessingHookHost;
  if (typeof host.runWithProcessingHooks === 'function') return 'runWithProcessingHooks';
  if (typeof host.onProcessingStartHook === 'function') return 'processingHooks';
  return 'none';
}

/**
 * Runs `fn` between Nest's processing start and end hooks (what OpenTelemetry-style
 * instrumentation attaches to), with whatever the installed `@nestjs/microservices` offers:
 *
 * - 12.0.4 and later: `Server.runWithProcessingHooks`, which Nest's own transports use;
 * - 11.1.6 to 12.0.3: `onProcessingStartHook` / `onProcessingEndHook`, wrapped the way
 *   `runWithProcessingHooks` wraps them (the end hook runs once, also when `fn` rejects);
 * - older: no hooks exist, `fn` runs directly with an end hook that does nothing.
 *
 * `fn` gets the end hook and must call it once the handler's stream has ended. A rejection of `fn`
 * reaches the returned value (a promise, except when a user-set start hook returns something else).
 */
export function runWithHooks(server: object, context: BaseRpcContext, fn: (runEndHook: ProcessingEndHook) => Promise<void>): unknown {
  const host = server as ProcessingHookHost;
  switch (processingHookSupport(server)) {
    case 'runWithProcessingHooks':
      return host.runWithProcessingHooks!(context, fn);
    case 'processingHooks':
      return host.onProcessingStartHook!.call(server, host.transportId, context, async () => {
        const runEndHook = onceEndHook(host, context);
        try {
          await fn(runEndHook);
        } catch (error) {
          runEndHook();
          throw error;
        }
      });
    case 'none':
      return fn(() => {});
  }
}

function onceEndHook(host: ProcessingHookHost, context: BaseRpcContext): ProcessingEndHook {
  let ended = false;
  return () => {
    if (ended) return;
    ended = true;
    host.onProcessingEndHook?.(host.transportId, context);
  };
}
