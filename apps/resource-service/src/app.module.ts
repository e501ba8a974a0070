import { Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BufferModule } from 'nestjs-redis-buffer';
import { AuditController } from './audit/audit.controller.js';
import { AuditTrail } from './audit/audit-trail.service.js';
import { SERVICE_CONFIG, type ServiceConfig } from './config/service-config.js';
import { ServiceConfigModule } from './config/service-config.module.js';
import { DemoControlController } from './demo/demo-control.controller.js';
import { LiveController } from './live/live.controller.js';
import { LiveService } from './live/live.service.js';
import { ObservabilityController } from './observability/observability.controller.js';
import { PresenceService } from './live/presence.service.js';
import { RemoteCache } from './resources/remote-cache.service.js';
import { ResourceBufferController } from './resources/resource-buffer.controller.js';
import { ResourceChanges } from './resources/resource-changes.service.js';
import { ResourceLookup } from './resources/resource-lookup.service.js';
import { ResourceStore } from './resources/resource-store.service.js';
import { ResourcesController } from './resources/resources.controller.js';
import { RequestCounterMiddleware } from './stats/request-counter.middleware.js';
import { StatsController } from './stats/stats.controller.js';
import { StatsService } from './stats/stats.service.js';
import { PageController } from './web/page.controller.js';

/** One instance of the resource service: HTTP in front, the buffer between instances. */
@Module({
  imports: [
    ServiceConfigModule,
    TerminusModule,
    BufferModule.forRootAsync({
      inject: [SERVICE_CONFIG],
      useFactory: (config: ServiceConfig) => ({
        redis: config.redisUrl,
        namespace: config.namespace,
        // The transport answers as `instanceName`; the client gets its own id for its inbox.
        instanceId: `${config.instanceName}.client`,
        timeout: config.lookupTimeoutMs,
      }),
    }),
  ],
  controllers: [ResourcesController, ResourceBufferController, StatsController, PageController, LiveController, DemoControlController, ObservabilityController, AuditController],
  providers: [ResourceStore, RemoteCache, ResourceLookup, ResourceChanges, StatsService, PresenceService, LiveService, AuditTrail],
})
export class AppModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    // `{*path}`: the wildcard that also matches `/` under Express 5 routing.
    consumer.apply(RequestCounterMiddleware).forRoutes('{*path}');
  }
}
