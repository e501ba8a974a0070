import { Controller, Get, Inject } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { DurableContext, DurablePattern } from 'nestjs-redis-buffer';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { AUDIT_GROUP, RESOURCE_AUDIT, type AuditEntry, type AuditRecord } from './audit.js';
import { AuditTrail } from './audit-trail.service.js';

@Controller('audit')
export class AuditController {
  constructor(
    private readonly trail: AuditTrail,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /** Runs on one instance of the audit group per change, at least once; a failure is retried. */
  @DurablePattern(RESOURCE_AUDIT, { group: AUDIT_GROUP })
  async record(@Payload() entry: AuditEntry, @Ctx() ctx: DurableContext): Promise<void> {
    await this.trail.write({ ...entry, entryId: ctx.getEntryId(), recordedBy: this.config.instanceName, attempt: ctx.getAttempt() });
  }

  /** `GET /audit`: the 50 newest records of the trail, from any instance. */
  @Get()
  latest(): Promise<AuditRecord[]> {
    return this.trail.latest();
  }
}
