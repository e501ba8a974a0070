import { Controller, Get, UseFilters } from '@nestjs/common';
import { BufferErrorFilter } from '../web/buffer-error.filter.js';
import { StatsService, type ClusterStats } from './stats.service.js';

@Controller('stats')
@UseFilters(BufferErrorFilter)
export class StatsController {
  constructor(private readonly stats: StatsService) {}

  /** Figures from every instance (resources held, requests served, lookups answered) and their totals. */
  @Get()
  cluster(): Promise<ClusterStats> {
    return this.stats.cluster();
  }
}
