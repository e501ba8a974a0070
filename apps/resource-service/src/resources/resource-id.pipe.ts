import { BadRequestException, Injectable, type PipeTransform } from '@nestjs/common';
import { RESOURCE_ID_PATTERN } from '../config/service-config.js';

/** Accepts resource ids made of letters, digits, `_`, `-` and `.` (at most 64). */
@Injectable()
export class ResourceIdPipe implements PipeTransform<string, string> {
  transform(id: string): string {
    if (!RESOURCE_ID_PATTERN.test(id)) throw new BadRequestException('A resource id is 1 to 64 letters, digits, "_", "-" or ".".');
    return id;
  }
}
