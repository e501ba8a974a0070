import 'reflect-metadata';
import { processingHookSupport, runWithHooks } from '../src/nest/processing-hooks.js';
import { BufferContext } from '../src/nest/buffer.context.js';

// Stand-ins with exactly the members each @nestjs/microservices line has; the real classes of
// every line run the end-to-end suite in CI (Nest 12.1, 11.2, 11.0).
const TRANSPORT = Symbol('test-transport');
const context = new BufferContext({ kind: 'request', requestId: 'r', pattern: 'p', senderId: 's', instanceId: 'i', channel: 'c', headers: {}, deadline: Date.now() + 1000 });

type Call = [string, ...unknown[]];

/** 11.0.x to 11.1.5: no processing hooks at all. */
class Nest110Server {
  readonly transportId = TRANSPORT;
}

/** 11.1.6 to 12.0.3: start and end hooks, no runWithProcessingHooks. */
class Nest116Server extends Nest110Server {
  readonly calls: Call[] = [];
  onProcessingStartHook = (transportId: unknown, ctx: unknown, done: () => Promise<unknown>): unknown => {
    this.calls.push(['start', transportId, ctx]);
    return done();
  };
  onProcessingEndHook? = (transportId: unknown, ctx: unknown): void => {
    this.calls.push(['end', transportId, ctx]);
  };
}

/** 12.0.4 and later. */
class Nest1204Server extends Nest116Server {
  runWithProcessingHooks(ctx: unknown, fn: (runEndHook: () => void) => Promise<void>): unknown {
    this.calls.push(['runWithProcessingHooks', ctx]);
    return fn(() => this.calls.push(['end', this.transportId, ctx]));
  }
}

describe('runWithHooks', () => {
  it('uses runWithProcessingHooks where Nest has it (@nestjs/microservices 12.0.4 and later)', async () => {
    const server = new Nest1204Server();
    expect(processingHookSupport(server)).toBe('runWithProcessingHooks');
    await runWithHooks(server, context, async (end) => end());
    expect(server.calls).toEqual([
      ['runWithProcessingHooks', context],
      ['end', TRANSPORT, context],
    ]);
  });

  it('wraps the start and end hooks where only they exist (11.1.6 to 12.0.3): the end hook runs once, after the handler', async () => {
    const server = new Nest116Server();
    expect(processingHookSupport(server)).toBe('processingHooks');
    const order: string[] = [];
    await runWithHooks(server, context, async (end) => {
      order.push(`handler after ${server.calls.map(([name]) => name).join(',')}`);
      end();
      end();
    });
    expect(order).toEqual(['handler after start']);
    expect(server.calls).toEqual([
      ['start', TRANSPORT, context],
      ['end', TRANSPORT, context],
    ]);
  });

  it('runs the end hook once and passes the rejection on when the handler rejects (11.1.6 to 12.0.3)', async () => {
    const server = new Nest116Server();
    const failure = new Error('handler failed');
    await expect(runWithHooks(server, context, async () => Promise.reject(failure))).rejects.toBe(failure);
    expect(server.calls.map(([name]) => name)).toEqual(['start', 'end']);
  });

  it('calls a start hook set with setOnProcessingStartHook with the server as `this`, as Nest does', async () => {
    const server = new Nest116Server();
    let self: unknown;
    server.onProcessingStartHook = function (this: unknown, _id: unknown, _ctx: unknown, done: () => Promise<unknown>) {
      self = this;
      return done();
    };
    await runWithHooks(server, context, async (end) => end());
    expect(self).toBe(server);
  });

  it('tolerates a server without an end hook (none was set)', async () => {
    const server = new Nest116Server();
    server.onProcessingEndHook = undefined;
    let ran = false;
    await runWithHooks(server, context, async (end) => {
      end();
      ran = true;
    });
    expect(ran).toBe(true);
  });

  it('calls the handler directly where Nest has no processing hooks (before 11.1.6)', async () => {
    const server = new Nest110Server();
    expect(processingHookSupport(server)).toBe('none');
    let ended = 0;
    await runWithHooks(server, context, async (end) => {
      end();
      ended++;
    });
    expect(ended).toBe(1);
    const failure = new Error('handler failed');
    await expect(runWithHooks(server, context, async () => Promise.reject(failure))).rejects.toBe(failure);
  });
});
