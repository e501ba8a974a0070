import { Module } from '@nestjs/common';
import type { BufferOptions } from '../core/options.js';
import { BufferClient } from './buffer.client.js';
import { BufferHealthIndicator } from './buffer.health-indicator.js';
import { BUFFER_MODULE_OPTIONS, ConfigurableBufferModule } from './buffer.module-definition.js';

/**
 * Provides an injectable `BufferClient` and `BufferHealthIndicator`. Global by default (`isGlobal: false` to scope it).
 *
 * @example
 * ```ts
 * @Module({ imports: [BufferModule.forRoot({ redis: 'redis://127.0.0.1:6379' })] })
 * export class AppModule {}
 *
 * // or, from configuration:
 * BufferModule.forRootAsync({
 *   imports: [ConfigModule],
 *   inject: [ConfigService],
 *   useFactory: (config: ConfigService) => ({ redis: config.getOrThrow('REDIS_URL') }),
 * })
 * ```
 */
@Module({
  providers: [
    {
      provide: BufferClient,
      useFactory: (options: BufferOptions) => new BufferClient(options),
      inject: [BUFFER_MODULE_OPTIONS],
    },
    BufferHealthIndicator,
  ],
  exports: [BufferClient, BufferHealthIndicator],
})
export class BufferModule extends ConfigurableBufferModule {}
