// `node bench/dist/bench/src/handler-cost.js`: the CPU time of the parts of a responder's work that
// need no Redis, per message, in one process: parsing a request envelope, Nest's handler pipeline
// (the proxy Nest builds around a @BufferedPattern method: params, pipes, guards, interceptors,
// exception filters), and encoding the reply. It tells how much of the responder's CPU per request
// (the benchmark's "responders µs/request") is Nest's own and how much the transport adds.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Payload, type MessageHandler } from '@nestjs/microservices';
import { BufferContext, BufferedPattern, RedisBufferTransport } from 'nestjs-redis-buffer';
import { ECHO_PATTERN, median, REPLY_DATA, REQUEST_DATA } from './common.js';

@Controller()
class EchoController {
  @BufferedPattern(ECHO_PATTERN)
  echo(@Payload() _data: unknown): unknown {
    return REPLY_DATA;
  }
}

@Module({ controllers: [EchoController] })
class EchoModule {}

const BATCH = 64;

/** ns per call of `fn`, run in batches of 64 awaited together (as requests arrive), median of 7 rounds. */
async function measure(fn: (index: number) => unknown, calls = 200_000): Promise<number> {
  const rounds: number[] = [];
  for (let round = 0; round < 8; round++) {
    const started = process.cpuUsage();
    for (let index = 0; index < calls; index += BATCH) {
      const pending: unknown[] = [];
      for (let offset = 0; offset < BATCH; offset++) pending.push(fn(index + offset));
      await Promise.all(pending);
    }
    const used = process.cpuUsage(started);
    // The first round warms the JIT up.
    if (round > 0) rounds.push(((used.user + used.system) * 1000) / calls);
  }
  return median(rounds);
}

async function main(): Promise<void> {
  const app = await NestFactory.create(EchoModule, { logger: ['error'] });
  const transport = new RedisBufferTransport({ instanceId: 'cost', namespace: 'cost' });
  app.connectMicroservice({ strategy: transport });
  await app.init();
  const handler = (transport as unknown as { messageHandlers: Map<string, MessageHandler> }).messageHandlers.get(ECHO_PATTERN)!;
  const info = { kind: 'request' as const, requestId: 'r', pattern: ECHO_PATTERN, senderId: 's', instanceId: 'cost', channel: 'c', headers: {}, deadline: Date.now() + 60_000 };
  const request = JSON.stringify({ ttl: 30_000, v: 1, kind: 'request', id: 'AbCdEfGh1234', pattern: ECHO_PATTERN, from: 'bench-caller-1234', replyTo: 'bench1:inbox:bench-caller-1234.AbCdEfGh', data: REQUEST_DATA });
  const floorRequest = JSON.stringify({ id: 'AbCdEfGh1234', p: ECHO_PATTERN, replyTo: 'bench1:req:inbox:12345678', data: REQUEST_DATA });
  const results = {
    'JSON.parse, library request envelope': await measure(() => JSON.parse(request)),
    'JSON.parse, floor request': await measure(() => JSON.parse(floorRequest)),
    "Nest's handler proxy (context made per call)": await measure(() => handler(REQUEST_DATA, new BufferContext(info))),
    'a plain async function (reference)': await measure(async () => REPLY_DATA),
    'reply encoding (JSON.stringify of the value)': await measure(() => JSON.stringify(REPLY_DATA)),
  };
  await app.close();
  process.stdout.write(`ns per message (CPU time, median of 7 rounds of 200,000), ${process.version}\n`);
  for (const [name, ns] of Object.entries(results)) process.stdout.write(`${Math.round(ns).toString().padStart(6)}  ${name}\n`);
}

void main();
