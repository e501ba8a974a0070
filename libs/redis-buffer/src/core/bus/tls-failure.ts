import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { RedisTlsError } from '../errors/redis-tls.error.js';

/** Node's codes for a certificate it refused (`tls.TLSSocket` verification errors). */
const CERTIFICATE_CODES = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * The `RedisTlsError` an ioredis connection error stands for, or `undefined` when it is no TLS
 * failure (a refused or timed-out connection, a reset, an error from Redis). Certificate
 * verification errors and OpenSSL's handshake errors (`ERR_SSL_*`: wrong version number, no
 * shared cipher, an alert from the server) qualify.
 */
export function tlsFailure(error: Error, address: string): RedisTlsError | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) return undefined;
  if (CERTIFICATE_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) {
    return new RedisTlsError(address, code, error.message, { cause: error });
  }
  return undefined;
}

/** Host and port of one server, for the protocol checks below. */
export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Whether the server at `address` completes a TLS handshake (its certificate unchecked: only the
 * protocol is in question). For telling a plain client that the port it was reset by speaks TLS.
 */
export function speaksTls(address: TcpAddress, timeoutMs: number): Promise<boolean> {
  const socket = tlsConnect({ host: address.host, port: address.port, rejectUnauthorized: false });
  return probe(socket, timeoutMs, (done) => socket.once('secureConnect', () => done(true)));
}

/**
 * Whether the server at `address` answers plain RESP (a `PING` gets `+PONG` or a `-` error such as
 * `-NOAUTH`). For telling a TLS client whose handshake never finished that the port is plain.
 */
export function speaksPlainRedis(address: TcpAddress, timeoutMs: number): Promise<boolean> {
  const socket = tcpConnect({ host: address.host, port: address.port });
  return probe(socket, timeoutMs, (done) => {
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (chunk: Buffer) => done(chunk[0] === 0x2b /* + */ || chunk[0] === 0x2d /* - */));
  });
}

/** A one-off probe on `socket`: the answer `listen` gives, false on an error or after `timeoutMs`; the socket is destroyed either way. */
function probe(socket: Socket, timeoutMs: number, listen: (done: (answer: boolean) => void) => void): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('error', () => done(false));
    listen(done);
  });
}

/** The error for a plain client on a port that speaks TLS. */
export function plainClientOnTlsPort(address: string, cause: Error): RedisTlsError {
  return new RedisTlsError(address, 'PLAIN_CLIENT_ON_TLS_PORT', 'the server reset the plain connection and completes a TLS handshake on that port', { cause });
}

/** The error for a TLS client on a port that speaks plain Redis. */
export function tlsClientOnPlainPort(address: string): RedisTlsError {
  return new RedisTlsError(address, 'TLS_CLIENT_ON_PLAIN_PORT', 'the TLS handshake got no answer, and the port answers plain Redis commands');
}
