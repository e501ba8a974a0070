import { Injectable, type NestMiddleware } from '@nestjs/common';
import { StatsService } from './stats.service.js';

/** Counts every HTTP request this instance serves, for `/stats`. */
@Injectable()
export class RequestCounterMiddleware implements NestMiddleware {
  constructor(private readonly stats: StatsService) {}

  use(_request: unknown, _response: unknown, next: () => void): void {
    this.stats.countRequestServed();
    next();
  }
}
