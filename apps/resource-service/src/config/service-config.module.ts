import { Global, Module } from '@nestjs/common';
import { loadServiceConfig, SERVICE_CONFIG } from './service-config.js';

/** Provides the `ServiceConfig`, read from the environment, to the whole app. */
@Global()
@Module({
  providers: [{ provide: SERVICE_CONFIG, useFactory: () => loadServiceConfig(process.env) }],
  exports: [SERVICE_CONFIG],
})
export class ServiceConfigModule {}
