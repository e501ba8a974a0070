import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Controller } from '@nestjs/common';
import { Payload, RpcException } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { BUFFER_TRANSPORT, BufferClient, BufferedPattern, BufferModule, RedisBufferTransport } from 'nestjs-redis-buffer';
import { interval, map, take, type Observable } from 'rxjs';
import { startRedis, type TestRedis } from '../support/redis-server.js';

// Runs against whichever @nestjs/microservices is installed; CI runs it on 12.1, 11.2 and 11.0,
// one per branch of the library's processing-hooks shim.
const microservicesDir = dirname(createRequire(import.meta.url).resolve('@nestjs/microservices'));
const microservicesVersion: string = JSON.parse(readFileSync(join(microservicesDir, 'package.json'), 'utf8')).version;
const [major, minor, patch] = microservicesVersion.split('.').map(Number);
const atLeast = (a: number, b: number, c: number): boolean => major! > a || (major === a && (minor! > b || (minor === b && patch! >= c)));

@Controller()
class HookedController {
  @BufferedPattern('hooks.value')
  value(@Payload() n: number): number {
    return n * 2;
  }

  @BufferedPattern('hooks.stream')
  stream(): Observable<number> {
    return interval(5).pipe(take(3), map((i) => i + 1));
  }

  @BufferedPattern('hooks.fail')
  async fail(): Promise<never> {
    throw new RpcException({ reason: 'failed on purpose' });
  }
}

describe(`Nest processing hooks around each request (@nestjs/microservices ${microservicesVersion})`, () => {
  let redis: TestRedis;
  let transport: RedisBufferTransport;
  let client: BufferClient;
  let close: () => Promise<void>;
  const calls: Array<{ hook: 'start' | 'end'; transportId: unknown; pattern: string; at: number }> = [];
  const hooksExist = typeof (RedisBufferTransport.prototype as { setOnProcessingStartHook?: unknown }).setOnProcessingStartHook === 'function';

  beforeAll(async () => {
    redis = await startRedis();
    const moduleRef = await Test.createTestingModule({
      imports: [BufferModule.forRoot({ redis: redis.url, namespace: 'hooks-test' })],
      controllers: [HookedController],
    }).compile();
    const app = moduleRef.createNestApplication();
    transport = new RedisBufferTransport({ redis: redis.url, namespace: 'hooks-test', instanceId: 'hooked' });
    if (hooksExist) {
      const hooked = transport as unknown as {
        setOnProcessingStartHook(hook: (transportId: unknown, context: { getPattern(): string }, done: () => Promise<unknown>) => unknown): void;
        setOnProcessingEndHook(hook: (transportId: unknown, context: { getPattern(): string }) => void): void;
      };
      hooked.setOnProcessingStartHook((transportId, context, done) => {
        calls.push({ hook: 'start', transportId, pattern: context.getPattern(), at: Date.now() });
        return done();
      });
      hooked.setOnProcessingEndHook((transportId, context) => {
        calls.push({ hook: 'end', transportId, pattern: context.getPattern(), at: Date.now() });
      });
    }
    app.connectMicroservice({ strategy: transport });
    await app.startAllMicroservices();
    await app.init();
    client = app.get(BufferClient);
    close = () => app.close();
  });

  afterAll(async () => {
    await close?.();
    await redis?.stop();
  });

  beforeEach(() => {
    calls.length = 0;
  });

  it('Nest has the hooks exactly from 11.1.6, and runWithProcessingHooks exactly from 12.0.4', () => {
    expect(hooksExist).toBe(atLeast(11, 1, 6));
    expect(typeof (transport as unknown as { runWithProcessingHooks?: unknown }).runWithProcessingHooks === 'function').toBe(atLeast(12, 0, 4));
  });

  it('answers a request between one start hook and one end hook, both given the transport id', async () => {
    const result = await client.gather<number>('hooks.value', 21);
    expect(result.completedBy).toBe('all');
    expect(result.replies.map((reply) => reply.data)).toEqual([42]);
    if (!hooksExist) return expect(calls).toEqual([]);
    expect(calls.map(({ hook, transportId, pattern }) => [hook, transportId, pattern])).toEqual([
      ['start', BUFFER_TRANSPORT, 'hooks.value'],
      ['end', BUFFER_TRANSPORT, 'hooks.value'],
    ]);
  });

  it('runs the end hook only when a streaming handler has completed', async () => {
    const result = await client.gather<number>('hooks.stream', null);
    expect(result.replies.map((reply) => reply.data)).toEqual([1, 2, 3]);
    if (!hooksExist) return expect(calls).toEqual([]);
    expect(calls.map(({ hook }) => hook)).toEqual(['start', 'end']);
    expect(calls[1]!.at - calls[0]!.at).toBeGreaterThanOrEqual(10);
  });

  it('answers a throwing handler with its error, and still runs the end hook once', async () => {
    const result = await client.gather('hooks.fail', null);
    expect(result.completedBy).toBe('all');
    expect(result.replies).toEqual([]);
    expect(result.errors).toHaveLength(1);
    expect(result.errors[0]!.error).toEqual({ reason: 'failed on purpose' });
    if (!hooksExist) return expect(calls).toEqual([]);
    expect(calls.map(({ hook }) => hook)).toEqual(['start', 'end']);
  });
});
