import { Controller } from '@nestjs/common';
import { Ctx, Payload } from '@nestjs/microservices';
import { BufferContext, BufferedPattern } from 'nestjs-redis-buffer';

export interface WhoReply {
  instanceId: string;
  answer: string;
}

@Controller()
export class WhoController {
  @BufferedPattern('compat.who')
  who(@Payload() question: string, @Ctx() context: BufferContext): WhoReply {
    return { instanceId: context.getInstanceId(), answer: `${question} from ${context.getInstanceId()}` };
  }
}
