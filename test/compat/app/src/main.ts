import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { BUFFER_TRANSPORT, BufferClient, RedisBufferTransport } from 'nestjs-redis-buffer';
import { AppModule, CallerModule, NAMESPACE } from './app.module.js';
import { FORMAT, loadOtherCopy } from './other-copy.js';
import type { WhoReply } from './who.controller.js';

// node dist/main.js serve <instanceId> [other-copy]: one instance; with "other-copy" its transport
//   comes from the library's other build while its handler's decorator came from this app's own.
// node dist/main.js gather: one scatter-gather, printed as JSON.
async function serve(instanceId: string, otherCopy: boolean): Promise<void> {
  const Transport = otherCopy ? (await loadOtherCopy()).RedisBufferTransport : RedisBufferTransport;
  const app = await NestFactory.createMicroservice(AppModule, {
    strategy: new Transport({ redis: process.env.REDIS_URL, namespace: NAMESPACE, instanceId }),
    logger: ['error', 'warn'],
  });
  await app.listen();
  process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
  process.stdout.write(`ready ${instanceId}\n`);
}

async function gather(): Promise<void> {
  const app = await NestFactory.createApplicationContext(CallerModule, { logger: ['error', 'warn'] });
  const result = await app.get(BufferClient).gather<WhoReply>('compat.who', 'hello', { timeout: 10_000 });
  const other = await loadOtherCopy();
  await app.close();
  process.stdout.write(
    `${JSON.stringify({
      format: FORMAT,
      completedBy: result.completedBy,
      expected: result.expected,
      replies: result.replies.map((reply) => reply.data),
      errors: result.errors.map((reply) => reply.error),
      sameTransportId: other.BUFFER_TRANSPORT === BUFFER_TRANSPORT,
      sameBufferClientClass: other.BufferClient === BufferClient,
    })}\n`,
  );
}

const [command, instanceId, flag] = process.argv.slice(2);
(command === 'serve' ? serve(instanceId ?? 'instance', flag === 'other-copy') : gather()).catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
