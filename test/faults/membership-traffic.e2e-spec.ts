// Fault suite: what membership costs on the wire at scale: 6 callers, 40 instances (4 processes of
// 10 core Responders), 2 s handlers. Every PUBLISH in the namespace is seen by a PSUBSCRIBE
// observer and classified by envelope kind; membership (ping, pong, who, hello, bye) against
// request traffic (request, reply), in PUBLISH commands and in bytes.
// The figures reported with TEST_LOGS=1 ("FAULT ...") are the ones in docs/reliability.md.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BufferClient } from 'nestjs-redis-buffer';
import { InstanceProcess, stopAll } from '../support/instances.js';
import { rawRedis, sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

quietLogs([]);
const namespace = 'fault-traffic';
const MANY_INSTANCES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'dist', 'many-instances.js');
const PROCESSES = 4;
const PER_PROCESS = 10;
const CALLERS = 6;
const IN_FLIGHT = 10;
const HANDLER_MS = 2000;
const RUN_MS = 8000;
const MEMBERSHIP = new Set(['ping', 'pong', 'who', 'hello', 'bye']);

interface Tally {
  publishes: Record<string, number>;
  envelopes: Record<string, number>;
  bytes: Record<string, number>;
}

/** Classifies one PUBLISH by the kind of its envelopes (a batch holds one kind in practice: counted under its first). */
function tally(counts: Tally, message: string): void {
  const parsed = JSON.parse(message) as unknown;
  const elements = (Array.isArray(parsed) ? parsed : [parsed]) as unknown[];
  // An array element is a compact reply, or a compact request after a request head (docs/protocol.md).
  const headed = (elements[0] as { kind?: string } | null)?.kind === 'requests';
  const kinds = (headed ? elements.slice(1) : elements).map((envelope: unknown) => (Array.isArray(envelope) ? (headed ? 'request' : 'reply') : ((envelope as { kind?: string }).kind ?? 'other')));
  const kind = kinds[0] ?? 'other';
  counts.publishes[kind] = (counts.publishes[kind] ?? 0) + 1;
  counts.bytes[kind] = (counts.bytes[kind] ?? 0) + Buffer.byteLength(message);
  for (const each of kinds) counts.envelopes[each] = (counts.envelopes[each] ?? 0) + 1;
}

const sum = (record: Record<string, number>, membership: boolean): number =>
  Object.entries(record).reduce((total, [kind, value]) => total + (MEMBERSHIP.has(kind) === membership ? value : 0), 0);

describe('fault: membership traffic', () => {
  let redis: TestRedis;
  let processes: InstanceProcess[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    processes = await Promise.all(
      Array.from({ length: PROCESSES }, (_, index) =>
        InstanceProcess.start({ instanceId: `p${index}`, redisUrl: redis.url, namespace, script: MANY_INSTANCES, env: { INSTANCE_COUNT: String(PER_PROCESS) } }, 60_000),
      ),
    );
  }, 90_000);

  afterAll(async () => {
    await stopAll(processes);
    await redis?.stop();
  });

  it(`${CALLERS} callers x ${PROCESSES * PER_PROCESS} instances, ${HANDLER_MS} ms handlers: liveness costs per instance, not per caller`, async () => {
    const clients = await Promise.all(
      Array.from({ length: CALLERS }, async () => {
        const client = new BufferClient({ redis: redis.url, namespace, timeout: HANDLER_MS + 3000 });
        await client.connect();
        return client;
      }),
    );
    const observer = rawRedis(redis.url);
    const counts: Tally = { publishes: {}, envelopes: {}, bytes: {} };
    let counting = false;
    observer.on('pmessage', (_pattern: string, _channel: string, message: string) => counting && tally(counts, message));
    await observer.psubscribe(`${namespace}:*`);
    try {
      const instances = PROCESSES * PER_PROCESS;
      for (const client of clients) expect(client.knownInstances()).toHaveLength(instances);
      let incomplete = 0;
      let gathers = 0;
      const startedAt = Date.now();
      counting = true;
      await Promise.all(
        clients.flatMap((client) =>
          Array.from({ length: IN_FLIGHT }, async () => {
            while (Date.now() - startedAt < RUN_MS) {
              const result = await client.gather<string>('slow', HANDLER_MS);
              gathers++;
              if (result.completedBy !== 'all' || result.missing.length > 0 || result.replies.length !== instances) incomplete++;
            }
          }),
        ),
      );
      await sleep(100);
      counting = false;
      const seconds = (Date.now() - startedAt) / 1000;
      const membershipPublishes = sum(counts.publishes, true);
      const requestPublishes = sum(counts.publishes, false);
      const figures = {
        callers: CALLERS,
        instances,
        inFlightPerCaller: IN_FLIGHT,
        handlerMs: HANDLER_MS,
        seconds: Math.round(seconds * 10) / 10,
        gathers,
        incomplete,
        publishes: counts.publishes,
        envelopes: counts.envelopes,
        bytes: counts.bytes,
        membershipToRequestPublishes: Math.round((membershipPublishes / requestPublishes) * 1000) / 1000,
        membershipToTrafficBytes: Math.round((sum(counts.bytes, true) / sum(counts.bytes, false)) * 1000) / 1000,
        pingsSent: clients.reduce((total, client) => total + client.stats.pings, 0),
        membershipPerInstancePerSecond: Math.round((membershipPublishes / instances / seconds) * 10) / 10,
      };
      reportFault('membership-traffic-6x40', figures);
      expect(incomplete).toBe(0);
      // Liveness costs per instance, not per (caller, instance) pair: a busy instance's beats on the
      // members channel (the first a fifth of the liveness bound into a handler, then one every two
      // fifths) reach every caller before they would ping it. Pinging per caller cost 17
      // PUBLISHes per instance per second here. Membership stays within a fifth of the bytes of the
      // requests and replies it serves: about 0.06 when replies were objects, about 0.135 with
      // compact replies (the same 54,800 bytes of beats in one run of each, against replies 2.4
      // times smaller), 0.149 with compact requests as well (requests were 3% of those bytes).
      expect(figures.membershipPerInstancePerSecond).toBeLessThanOrEqual(4);
      expect(figures.membershipToTrafficBytes).toBeLessThanOrEqual(0.2);
    } finally {
      observer.disconnect();
      await Promise.all(clients.map((client) => client.close()));
    }
  }, 90_000);
});
