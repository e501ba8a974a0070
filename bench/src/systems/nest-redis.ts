// System 5: NestJS's built-in Redis transport (Transport.REDIS / ClientRedis). It keeps the first
// reply only, so it takes part at N = 1.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientRedis, MessagePattern, Payload, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { countReplies, HOLD_PATTERN, REPLY_DATA } from '../common.js';
import type { CallerSystem, Done, ResponderGroup } from './types.js';

export class NestRedisCaller implements CallerSystem {
  private readonly client: ClientRedis;

  constructor(port: number) {
    this.client = new ClientRedis({ host: '127.0.0.1', port });
  }

  async start(): Promise<void> {
    await this.client.connect();
  }

  request(_n: number, pattern: string, data: unknown, done: Done): void {
    countReplies(this.client.send(pattern, data), done);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

@Controller()
class NestBenchController {
  @MessagePattern('bench.echo')
  echo(@Payload() _data: unknown): unknown {
    return REPLY_DATA;
  }

  @MessagePattern(HOLD_PATTERN)
  hold(@Payload() ms: number): Promise<null> {
    return new Promise((resolve) => setTimeout(() => resolve(null), ms));
  }
}

@Module({ controllers: [NestBenchController] })
class NestBenchModule {}

export async function startNestRedisResponders(port: number, ids: readonly string[]): Promise<ResponderGroup> {
  const apps: Array<{ close(): Promise<void> }> = [];
  for (const _id of ids) {
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(NestBenchModule, {
      transport: Transport.REDIS,
      options: { host: '127.0.0.1', port },
      logger: ['error', 'warn'],
    });
    await app.listen();
    apps.push(app);
  }
  return { close: async () => void (await Promise.all(apps.map((app) => app.close()))) };
}
