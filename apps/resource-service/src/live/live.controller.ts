import { Controller, Get, Sse, type MessageEvent } from '@nestjs/common';
import { Payload } from '@nestjs/microservices';
import { BufferedEvent } from 'nestjs-redis-buffer';
import { concat, map, of, type Observable } from 'rxjs';
import { DEMO_CONTROL, INSTANCE_HEARTBEAT, INSTANCE_LEFT, type DemoControlEvent, type InstanceHeartbeat, type InstanceLeft, type InstancePresence } from './live-events.js';
import { LiveService } from './live.service.js';
import { PresenceService } from './presence.service.js';

@Controller()
export class LiveController {
  constructor(
    private readonly live: LiveService,
    private readonly presence: PresenceService,
  ) {}

  /**
   * Server-Sent Events for the page: one `hello` (who serves it, every instance known), then a
   * `presence` event whenever an instance arrives, goes silent or leaves, and a `resource` event
   * whenever a resource changes on any instance.
   */
  @Sse('live')
  stream(): Observable<MessageEvent> {
    return concat(of(this.live.hello()), this.live.feed).pipe(map((event) => ({ type: event.type, data: event.data })));
  }

  /** Every instance known here and whether it answers (its heartbeats), as JSON. */
  @Get('live/instances')
  instances(): InstancePresence[] {
    return this.presence.list();
  }

  @BufferedEvent(INSTANCE_HEARTBEAT)
  heartbeat(@Payload() beat: InstanceHeartbeat): void {
    if (typeof beat?.instance === 'string' && typeof beat.url === 'string') this.presence.heartbeat(beat);
  }

  @BufferedEvent(INSTANCE_LEFT)
  left(@Payload() farewell: InstanceLeft): void {
    if (typeof farewell?.instance === 'string') this.presence.left(farewell.instance, String(farewell.reason ?? 'left'));
  }

  /** What the demo launcher did to an instance; shown on the page beside what the buffer sees. */
  @BufferedEvent(DEMO_CONTROL)
  demoControl(@Payload() event: DemoControlEvent): void {
    if (typeof event?.instance === 'string' && typeof event.action === 'string') this.presence.demoControl({ ...event, note: String(event.note ?? event.action) });
  }
}
