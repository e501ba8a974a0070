import { BadRequestException, Controller, Get, Headers, HttpCode, HttpException, HttpStatus, Inject, NotFoundException, Param, Post } from '@nestjs/common';
import { RESOURCE_ID_PATTERN, SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';

/** What the page may ask the launcher to do to an instance. */
const ACTIONS = new Set(['freeze', 'thaw', 'kill', 'restart']);

/**
 * Demo only: the page's Freeze, Thaw, Kill and Restart buttons, passed on to the launcher of
 * `npm run demo`, which owns the processes. Without `DEMO_CONTROL_URL` every route answers 404.
 *
 * A browser sends the `X-Demo-Control` header only from this page's own origin (another site would
 * need a CORS preflight, which nothing here answers), so no other web page can drive these.
 */
@Controller('demo')
export class DemoControlController {
  constructor(@Inject(SERVICE_CONFIG) private readonly config: ServiceConfig) {}

  /** The launcher's view of every instance: state (running, frozen, exited, restarting), pid, port. */
  @Get('instances')
  instances(): Promise<unknown> {
    return this.forward('GET', '/instances');
  }

  @Post('instances/:name/:action')
  @HttpCode(HttpStatus.OK)
  control(@Param('name') name: string, @Param('action') action: string, @Headers('x-demo-control') marker: string | undefined): Promise<unknown> {
    if (marker !== '1') throw new BadRequestException('Send the X-Demo-Control: 1 header (the page does).');
    if (!RESOURCE_ID_PATTERN.test(name) || !ACTIONS.has(action)) throw new NotFoundException(`No such demo action: ${action} on ${name}.`);
    return this.forward('POST', `/instances/${name}/${action}`);
  }

  private async forward(method: 'GET' | 'POST', path: string): Promise<unknown> {
    const { demoControlUrl, demoControlToken } = this.config;
    if (demoControlUrl === undefined) throw new NotFoundException('Demo controls exist only under npm run demo (DEMO_CONTROL_URL is not set).');
    let response: Response;
    try {
      response = await fetch(`${demoControlUrl}${path}`, { method, headers: { 'X-Demo-Token': demoControlToken ?? '' }, signal: AbortSignal.timeout(5000) });
    } catch (error) {
      throw new HttpException({ statusCode: HttpStatus.BAD_GATEWAY, message: `The demo launcher did not answer: ${(error as Error).message}` }, HttpStatus.BAD_GATEWAY);
    }
    const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
    if (!response.ok) throw new HttpException({ statusCode: response.status, ...body }, response.status);
    return body;
  }
}
