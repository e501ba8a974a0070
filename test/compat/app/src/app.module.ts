import { Module } from '@nestjs/common';
import { BufferModule } from 'nestjs-redis-buffer';
import { WhoController } from './who.controller.js';

export const NAMESPACE = 'compat';

/** The instances: one @BufferedPattern handler. */
@Module({ controllers: [WhoController] })
export class AppModule {}

/** The caller: a BufferClient. */
@Module({ imports: [BufferModule.forRoot({ redis: process.env.REDIS_URL, namespace: NAMESPACE })] })
export class CallerModule {}
