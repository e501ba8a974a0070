import { Catch, HttpStatus, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { BufferError, BufferErrorCode } from 'nestjs-redis-buffer';

/** The HTTP status of each library error: Redis trouble is the service being unavailable, not a bug. */
const STATUS_BY_CODE: Partial<Record<BufferErrorCode, HttpStatus>> = {
  [BufferErrorCode.NoResponders]: HttpStatus.SERVICE_UNAVAILABLE,
  [BufferErrorCode.ConnectionLost]: HttpStatus.SERVICE_UNAVAILABLE,
  [BufferErrorCode.TooManyRequests]: HttpStatus.SERVICE_UNAVAILABLE,
  [BufferErrorCode.Timeout]: HttpStatus.GATEWAY_TIMEOUT,
  [BufferErrorCode.PayloadTooLarge]: HttpStatus.PAYLOAD_TOO_LARGE,
};

/** Turns a `BufferError` from a gather or an emit into an HTTP answer that names its code. */
@Catch(BufferError)
export class BufferErrorFilter implements ExceptionFilter<BufferError> {
  catch(error: BufferError, host: ArgumentsHost): void {
    const status = STATUS_BY_CODE[error.code] ?? HttpStatus.INTERNAL_SERVER_ERROR;
    host
      .switchToHttp()
      .getResponse<{ status(code: number): { json(body: unknown): void } }>()
      .status(status)
      .json({ statusCode: status, code: error.code, message: error.message });
  }
}
