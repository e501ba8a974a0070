// Fault suite, TLS: a real redis-server with --tls-port, a CA and a server certificate made here by
// openssl. A trusted CA connects and works; an untrusted certificate, a host name the certificate
// does not hold, a TLS client on the plain port and a plain client on the TLS port each fail
// start-up with a RedisTlsError that names the cause, before connectTimeout, and are not retried.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BufferClient, Caller, RedisTlsError, Responder, type BufferOptions } from 'nestjs-redis-buffer';
import { lastValueFrom, toArray } from 'rxjs';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { FAULT_APP } from '../support/load.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { freePort, startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

// The BufferClient's connection warnings in this process: held back, not printed.
quietLogs([/^Redis: /]);
const CONNECT_TIMEOUT = 6000;

function openssl(args: string[], dir: string): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

/** A CA, and a certificate it signed for 127.0.0.1 (an IP SAN only: "localhost" does not match). */
function makeCertificates(dir: string): void {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=Test CA', '-keyout', 'ca-key.pem', '-out', 'ca.pem'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'key.pem', '-out', 'server.csr'], dir);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem', '-CAcreateserial', '-days', '1', '-extfile', 'san.ext', '-out', 'cert.pem'], dir);
  // The chain the server presents: its certificate, then the CA's.
  writeFileSync(join(dir, 'chain.pem'), readFileSync(join(dir, 'cert.pem'), 'utf8') + readFileSync(join(dir, 'ca.pem'), 'utf8'));
}

describe('TLS failures say so', () => {
  let dir: string;
  let redis: TestRedis;
  let tlsPort: number;
  let ca: string;
  let instances: InstanceProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rb-tls-'));
    makeCertificates(dir);
    ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    tlsPort = await freePort();
    // Plain on redis.port, TLS on tlsPort.
    redis = await startRedis([
      '--tls-port', String(tlsPort), '--tls-cert-file', join(dir, 'chain.pem'), '--tls-key-file', join(dir, 'key.pem'),
      '--tls-ca-cert-file', join(dir, 'ca.pem'), '--tls-auth-clients', 'no',
    ], { allowExternal: false });
  });

  afterAll(async () => {
    await stopAll(instances);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('with the CA trusted (tls.ca, or rediss:// with NODE_EXTRA_CA_CERTS): instances and a client connect, send and gather', async () => {
    instances = await startInstances([
      { instanceId: 'tls1', redisUrl: `rediss://127.0.0.1:${tlsPort}`, namespace: 'fault-tls', script: FAULT_APP, env: { NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') } },
      { instanceId: 'tls2', redisUrl: '', namespace: 'fault-tls', script: FAULT_APP, env: { REDIS_OPTIONS: JSON.stringify({ host: '127.0.0.1', port: tlsPort, tls: { caFile: join(dir, 'ca.pem') } }) } },
    ]);
    const client = new BufferClient({ redis: { host: '127.0.0.1', port: tlsPort, tls: { ca } }, namespace: 'fault-tls' });
    try {
      const result = await client.gather<string>('whoami', null);
      expect(result.completedBy).toBe('all');
      expect(result.replies.map((r) => r.data).sort()).toEqual(['tls1', 'tls2']);
      expect((await lastValueFrom(client.send<string>('whoami', null).pipe(toArray()))).sort()).toEqual(['tls1', 'tls2']);
    } finally {
      await client.close();
      await stopAll(instances);
      instances = [];
    }
  }, 60_000);

  const cases: Array<[name: string, redis: () => BufferOptions['redis'], tlsCode: string, says: RegExp]> = [
    ['a certificate whose CA is not trusted', () => `rediss://127.0.0.1:${tlsPort}`, 'SELF_SIGNED_CERT_IN_CHAIN', /self-signed certificate in certificate chain.*Give the CA/],
    ['a host name the certificate does not hold', () => ({ host: 'localhost', port: tlsPort, tls: { ca } }), 'ERR_TLS_CERT_ALTNAME_INVALID', /localhost.*does not name this host/],
    ['a TLS client on the plain port', () => ({ host: '127.0.0.1', port: redis.port, tls: { ca } }), 'TLS_CLIENT_ON_PLAIN_PORT', /does not speak TLS on this port/],
    ['a plain client on the TLS port', () => `redis://127.0.0.1:${tlsPort}`, 'PLAIN_CLIENT_ON_TLS_PORT', /expects TLS on this port.*rediss:\/\//],
  ];

  describe.each(cases)('%s', (_name, target, tlsCode, says) => {
    it('fails a caller and an instance with RedisTlsError naming the cause, before connectTimeout, and stops trying', async () => {
      const caller = new Caller({ redis: target(), namespace: 'fault-tls', connectTimeout: CONNECT_TIMEOUT }, { logger: { log: () => undefined, warn: () => undefined, error: () => undefined } });
      const responder = new Responder({ redis: target(), namespace: 'fault-tls', instanceId: 'tls-bad', connectTimeout: CONNECT_TIMEOUT }, { logger: { log: () => undefined, warn: () => undefined, error: () => undefined } }).handle('whoami', () => 'tls-bad');
      const admin = rawRedis(redis.url);
      // Connections the server accepted (plain and TLS): what would grow if anything kept retrying.
      const accepted = async (): Promise<number> => Number(/total_connections_received:(\d+)/.exec(await admin.info('stats'))![1]);
      try {
        const started = Date.now();
        const [callerError, responderError] = await Promise.all([caller.connect().catch((e: unknown) => e), responder.listen().catch((e: unknown) => e)]);
        const elapsed = Date.now() - started;
        for (const error of [callerError, responderError]) {
          expect(error).toBeInstanceOf(RedisTlsError);
          expect((error as RedisTlsError).code).toBe('BUFFER_REDIS_TLS');
          expect((error as RedisTlsError).tlsCode).toBe(tlsCode);
          expect((error as Error).message).toMatch(says);
          expect((error as Error).message).toContain('Not retried');
        }
        // Certificate errors come at once; a TLS client on a plain port hears nothing back, and is
        // diagnosed halfway through connectTimeout.
        expect(elapsed).toBeLessThan(tlsCode === 'TLS_CLIENT_ON_PLAIN_PORT' ? CONNECT_TIMEOUT : 1500);
        reportFault(`tls ${tlsCode}`, { elapsedMs: elapsed, message: (callerError as Error).message });
        // A request tries afresh (a fixed certificate needs no restart) and fails with the same error.
        await expect(caller.gather('whoami', null)).rejects.toBeInstanceOf(RedisTlsError);
        // Nothing retries in the background.
        await sleep(300);
        expect(caller.connectionStatus).toBe('disconnected');
        const before = await accepted();
        await sleep(1500);
        expect((await accepted()) - before).toBe(0);
      } finally {
        await caller.close();
        await responder.close();
        admin.disconnect();
      }
    }, 30_000);
  });

});
