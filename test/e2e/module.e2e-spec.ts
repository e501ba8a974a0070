import 'reflect-metadata';
import { Controller, Injectable, Module } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { BufferClient, BufferedPattern, BufferModule, RedisBufferTransport } from 'nestjs-redis-buffer';
import { lastValueFrom, toArray } from 'rxjs';
import { startRedis, type TestRedis } from '../support/redis-server.js';

@Controller()
class EchoController {
  @BufferedPattern('echo')
  echo(@Payload() value: unknown): unknown {
    return value;
  }
}

@Injectable()
class Asker {
  constructor(readonly buffer: BufferClient) {}
}

describe('BufferModule and RedisBufferTransport in one Nest app', () => {
  let redis: TestRedis;

  beforeAll(async () => {
    redis = await startRedis();
  });

  afterAll(async () => {
    await redis?.stop();
  });

  it('forRoot provides a global BufferClient with the given options, and app.close() closes it', async () => {
    @Module({ providers: [Asker] })
    class FeatureModule {}

    const moduleRef = await Test.createTestingModule({
      imports: [BufferModule.forRoot({ redis: redis.url, namespace: 'module-test', timeout: 1234 }), FeatureModule],
      controllers: [EchoController],
    }).compile();
    const app = moduleRef.createNestApplication();
    const transport = new RedisBufferTransport({ redis: redis.url, namespace: 'module-test' });
    app.connectMicroservice({ strategy: transport });
    await app.startAllMicroservices();
    await app.init();

    const client = app.get(Asker).buffer;
    expect(client).toBeInstanceOf(BufferClient);
    expect(client.options.timeout).toBe(1234);
    expect(await lastValueFrom(client.send('echo', { hello: 'world' }).pipe(toArray()))).toEqual([{ hello: 'world' }]);

    await app.close();
    const statuses: string[] = [];
    client.status.subscribe((status) => statuses.push(status)).unsubscribe();
    expect(statuses).toEqual(['closed']);
    expect(() => transport.unwrap()).not.toThrow();
  });

  it('forRootAsync builds the options from a factory with injected dependencies', async () => {
    const CONFIG = Symbol('config');
    @Module({ providers: [{ provide: CONFIG, useValue: { url: redis.url } }], exports: [CONFIG] })
    class ConfigModule {}

    const moduleRef = await Test.createTestingModule({
      imports: [
        BufferModule.forRootAsync({
          imports: [ConfigModule],
          inject: [CONFIG],
          useFactory: (config: { url: string }) => ({ redis: config.url, namespace: 'module-async', instanceId: 'from-factory' }),
        }),
      ],
    }).compile();
    const client = moduleRef.get(BufferClient);
    expect(client.instanceId).toBe('from-factory');
    expect(client.options.redis).toBe(redis.url);
    await moduleRef.close();
  });

  it('a RedisBufferTransport refuses bad options with a typed error before anything starts', () => {
    expect(() => new RedisBufferTransport({ namespace: 'has space' })).toThrow(/namespace/);
  });

  it('unwrap() before listen says what to do', () => {
    expect(() => new RedisBufferTransport({}).unwrap()).toThrow(/startAllMicroservices/);
  });
});
