// A unit test as a `nest new` app writes it, run by that template's Jest config (ts-jest, CommonJS).
import 'reflect-metadata';
import { Test, type TestingModule } from '@nestjs/testing';
import { BufferClient, BufferModule, RedisBufferTransport } from 'nestjs-redis-buffer';
import { WhoController, type WhoReply } from './who.controller';

describe('WhoController over nestjs-redis-buffer', () => {
  let moduleRef: TestingModule;

  afterEach(async () => {
    await moduleRef?.close();
  });

  it('answers a gather from a BufferClient', async () => {
    moduleRef = await Test.createTestingModule({
      imports: [BufferModule.forRoot({ redis: process.env.REDIS_URL, namespace: 'compat-jest' })],
      controllers: [WhoController],
    }).compile();
    const microservice = moduleRef.createNestMicroservice({ strategy: new RedisBufferTransport({ redis: process.env.REDIS_URL, namespace: 'compat-jest', instanceId: 'jest' }) });
    try {
      await microservice.listen();
      const result = await moduleRef.get(BufferClient).gather<WhoReply>('compat.who', 'hi');

      expect(result.completedBy).toBe('all');
      expect(result.expected).toBe(1);
      expect(result.replies.map((reply) => reply.data)).toEqual([{ instanceId: 'jest', answer: 'hi from jest' }]);
    } finally {
      await microservice.close();
    }
  });
});
