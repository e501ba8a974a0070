import 'reflect-metadata';
// First: the library's clients and transports report into the MeterProvider it registers.
import './observability/metrics.js';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { BufferClient, BufferHealthIndicator, RedisBufferTransport } from 'nestjs-redis-buffer';
import { AppModule } from './app.module.js';
import { SERVICE_CONFIG, type ServiceConfig } from './config/service-config.js';

async function bootstrap(): Promise<void> {
  // forceCloseConnections: open pages hold SSE connections (GET /live) and keep-alive sockets, which
  // would otherwise keep the HTTP server, and so the shutdown, waiting.
  const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'], forceCloseConnections: true });
  const config = app.get<ServiceConfig>(SERVICE_CONFIG);
  const transport = new RedisBufferTransport({ redis: config.redisUrl, namespace: config.namespace, instanceId: config.instanceName });
  app.connectMicroservice({ strategy: transport });
  // GET /health reports this instance's own connection and subscriptions too.
  app.get(BufferHealthIndicator).watch(transport);
  await app.startAllMicroservices();
  // Fail at start-up, not on the first lookup, when Redis is unreachable.
  await app.get(BufferClient).connect();
  await app.listen(config.port, config.host);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        new Logger('resource-service').error(`Shutdown after ${signal} failed: ${String(error)}`);
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a repeated signal while closing must not kill the process with the default action.
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  const holds = config.resources.length > 0 ? config.resources.join(', ') : 'nothing yet';
  process.stdout.write(`READY ${config.instanceName} ${config.publicUrl} (listening on ${config.host}:${config.port}, holds ${holds})\n`);
}

bootstrap().catch((error: unknown) => {
  process.stderr.write(`resource-service failed to start: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
