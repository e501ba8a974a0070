import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * The TLS handshake with Redis failed: a certificate Node does not trust (self-signed, unknown CA,
 * expired), a host name the certificate does not name, or a protocol mismatch (a TLS client on a
 * plain port, a plain client on a TLS port). Raised at once by `connect()`/`listen()`, and the
 * connection attempts stop: a server that answers with the wrong certificate is not down, and
 * retrying would only repeat the failure. Fix the `tls` options (`ca`, `servername`), the CA given
 * to Node (`NODE_EXTRA_CA_CERTS`), or the URL scheme (`rediss://` for TLS, `redis://` for plain).
 */
export class RedisTlsError extends BufferError {
  readonly code = BufferErrorCode.RedisTls;

  constructor(
    /** Where it tried to connect, without credentials. */
    readonly address: string,
    /**
     * Node's or OpenSSL's code for the failure (`SELF_SIGNED_CERT_IN_CHAIN`, `ERR_TLS_CERT_ALTNAME_INVALID`,
     * `ERR_SSL_WRONG_VERSION_NUMBER`, …), or the library's diagnosis of a protocol mismatch
     * (`TLS_CLIENT_ON_PLAIN_PORT`, `PLAIN_CLIENT_ON_TLS_PORT`).
     */
    readonly tlsCode: string | undefined,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`TLS with ${address} failed: ${reason}${tlsCode === undefined ? '' : ` (${tlsCode})`}. ${advice(tlsCode, reason)} Not retried: a TLS failure does not go away by waiting.`, options);
  }
}

function advice(tlsCode: string | undefined, reason: string): string {
  if (tlsCode === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'The certificate does not name this host: connect by a name it holds, or set "tls.servername".';
  if (tlsCode === 'TLS_CLIENT_ON_PLAIN_PORT' || tlsCode === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/i.test(reason)) {
    return 'The server does not speak TLS on this port: use "redis://" (no "tls" option) for a plain port, or the server\'s "tls-port".';
  }
  if (tlsCode === 'PLAIN_CLIENT_ON_TLS_PORT') return 'The server expects TLS on this port: use "rediss://" (or the "tls" option).';
  return 'Give the CA that signed the server\'s certificate ("tls": { "ca": … } in the redis options, or NODE_EXTRA_CA_CERTS).';
}
