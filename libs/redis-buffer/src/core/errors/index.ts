export { BufferError, BufferErrorCode } from './buffer.error.js';
export { NoRespondersError } from './no-responders.error.js';
export { BufferTimeoutError } from './buffer-timeout.error.js';
export { ConnectionLostError } from './connection-lost.error.js';
export { PayloadTooLargeError } from './payload-too-large.error.js';
export { BadMessageError } from './bad-message.error.js';
export { InvalidOptionsError } from './invalid-options.error.js';
export { TooManyRequestsError } from './too-many-requests.error.js';
export { RedisPermissionError } from './redis-permission.error.js';
