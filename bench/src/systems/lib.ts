// System 1: this library, used exactly as a user would, by its package name. The same code runs a
// second build of the library (system "base", `--baseline=path/to/dist/index.js`) for before/after.
import 'reflect-metadata';
import { Controller, Module, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Payload } from '@nestjs/microservices';
import { pathToFileURL } from 'node:url';
import { countReplies, ECHO_PATTERN, HOLD_PATTERN, REPLY_DATA } from '../common.js';
import type { CallerSystem, Done, ResponderGroup } from './types.js';
import { countPublishes, type KindCounts } from '../publish-tally.js';
import type { Redis } from 'ioredis';

type Library = typeof import('nestjs-redis-buffer');
type Client = InstanceType<Library['BufferClient']>;

export async function loadLibrary(baseline: string | undefined): Promise<Library> {
  return baseline === undefined ? import('nestjs-redis-buffer') : ((await import(pathToFileURL(baseline).href)) as Library);
}

export class LibCaller implements CallerSystem {
  private readonly client: Client;

  constructor(library: Library, url: string, namespace: string) {
    this.client = new library.BufferClient({ redis: url, namespace, instanceId: `bench-caller-${process.pid}`, timeout: 30_000 });
  }

  async start(): Promise<void> {
    await this.client.connect();
  }

  countPublishes(): KindCounts {
    const { publisher, subscriber } = this.client.unwrap<{ publisher: Redis; subscriber: Redis }>();
    return countPublishes(publisher, subscriber);
  }

  request(_n: number, pattern: string, data: unknown, done: Done): void {
    countReplies(this.client.send(pattern, data), done);
  }

  gather(_n: number, pattern: string, data: unknown, timeoutMs: number, done: (error: unknown, replies: number, complete: boolean) => void): void {
    this.client.gather(pattern, data, { timeout: timeoutMs }).then(
      (result) => done(undefined, result.replies.length, result.completedBy === 'all'),
      (error: unknown) => done(error, 0, false),
    );
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** The responders' controller: the same one serves the library's instances and the "coalesced floor + Nest handler" system. */
export function benchModule(library: Library, echoPattern: string = ECHO_PATTERN): Type<unknown> {
  @Controller()
  class BenchController {
    @library.BufferedPattern(echoPattern)
    echo(@Payload() _data: unknown): unknown {
      return REPLY_DATA;
    }

    @library.BufferedPattern(HOLD_PATTERN)
    hold(@Payload() ms: number): Promise<null> {
      return new Promise((resolve) => setTimeout(() => resolve(null), ms));
    }
  }

  @Module({ controllers: [BenchController] })
  class BenchModule {}
  return BenchModule;
}

/**
 * One Nest app per process with one `RedisBufferTransport` per responding instance, each with its
 * own instanceId; `echoPattern` is what the echo handler binds (a wildcard for system "topic").
 */
export async function startLibResponders(library: Library, url: string, namespace: string, ids: readonly string[], echoPattern: string = ECHO_PATTERN): Promise<ResponderGroup> {
  const app = await NestFactory.create(benchModule(library, echoPattern), { logger: ['error', 'warn'] });
  // maxConcurrentHandlers: the in-flight memory test holds 10,000 requests open in the handlers at once.
  for (const instanceId of ids) {
    app.connectMicroservice({ strategy: new library.RedisBufferTransport({ redis: url, namespace, instanceId, maxConcurrentHandlers: 20_000 }) }, { inheritAppConfig: true });
  }
  await app.startAllMicroservices();
  await app.init();
  return { close: () => app.close() };
}
