import { Controller, Get, Req, Res } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BufferHealthIndicator } from 'nestjs-redis-buffer';
import { prometheus } from './metrics.js';

/** What operators scrape: Prometheus metrics and a terminus health check. */
@Controller()
export class ObservabilityController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly buffer: BufferHealthIndicator,
  ) {}

  /** The library's OpenTelemetry metrics (and any of the app's), in Prometheus's text format. */
  @Get('metrics')
  metrics(@Req() request: IncomingMessage, @Res() response: ServerResponse): void {
    prometheus.getMetricsRequestHandler(request, response);
  }

  /** 200 while Redis is reachable and every subscription is confirmed, 503 otherwise. */
  @Get('health')
  @HealthCheck()
  check(): Promise<unknown> {
    return this.health.check([() => this.buffer.isHealthy('buffer')]);
  }
}
