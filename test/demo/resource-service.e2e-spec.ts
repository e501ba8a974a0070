// The demo topology for real: redis-server plus three resource-service instances as separate Node
// processes, checked over HTTP against every instance.
import { randomBytes } from 'node:crypto';
import { reportFault } from '../support/captured-logs.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { DEMO_TOPOLOGY, openEventStream, readEventStream, ResourceServiceProcess, startResourceServices, stopResourceServices, waitForPresence } from '../support/resource-service.js';

interface LookupReply {
  instance: string;
  holds: boolean;
  resource: { id: string; owner: string; version: number; value: unknown } | null;
  atMs: number;
}

interface InstanceStats {
  instance: string;
  resources: string[];
  resourcesHeld: number;
  requestsServed: number;
  lookupsAnswered: number;
  cached: string[];
  lastInvalidation: string | null;
  recentActivity: string[];
}

const OWNER_OF = new Map(DEMO_TOPOLOGY.flatMap(({ name, resources }) => resources.map((id) => [id, name] as const)));
const NAMES = DEMO_TOPOLOGY.map(({ name }) => name).sort();

async function getJson<T = Record<string, unknown>>(url: string, init?: RequestInit): Promise<{ status: number; body: T; elapsedMs: number }> {
  const startedAt = performance.now();
  const response = await fetch(url, init);
  const body = (await response.json()) as T;
  return { status: response.status, body, elapsedMs: performance.now() - startedAt };
}

describe('resource-service: three instances behind one Redis', () => {
  let redis: TestRedis;
  let instances: ResourceServiceProcess[];
  const byName = (name: string): ResourceServiceProcess => instances.find((instance) => instance.name === name)!;

  const namespace = `demo-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startResourceServices(redis.url, namespace);
  });

  afterAll(async () => {
    if (instances) await stopResourceServices(instances);
    await redis?.stop();
  });

  it('finds every resource from every instance, locally or from its holder', async () => {
    for (const instance of instances) {
      for (const [id, owner] of OWNER_OF) {
        const { status, body } = await getJson<{ resource: { id: string; owner: string }; source: string; servedBy: string }>(`${instance.url}/resources/${id}`);
        expect(status).toBe(200);
        expect(body.resource).toMatchObject({ id, owner });
        expect(body.servedBy).toBe(instance.name);
        expect(body.source).toBe(owner === instance.name ? 'local' : 'remote');
      }
    }
  });

  it('answers 404 for an unknown resource as soon as every instance said no, and /replies shows completedBy "all"', async () => {
    for (const instance of instances) {
      const id = `unknown-${instance.name}`;
      const miss = await getJson<{ completedBy: string; expected: number; replies: LookupReply[] }>(`${instance.url}/resources/${id}`);
      expect(miss.status).toBe(404);
      expect(miss.body.completedBy).toBe('all');
      expect(miss.body.expected).toBe(3);
      // The lookup timeout is 3000 ms: a 404 this fast came from the answers, not the timer.
      expect(miss.elapsedMs).toBeLessThan(1000);

      const replies = await getJson<{ completedBy: string; expected: number; finished: number; askedBy: string; elapsedMs: number; replies: LookupReply[] }>(
        `${instance.url}/resources/${id}/replies`,
      );
      expect(replies.status).toBe(200);
      expect(replies.body).toMatchObject({ completedBy: 'all', expected: 3, finished: 3, askedBy: instance.name });
      expect(replies.body.replies.map((reply) => reply.instance).sort()).toEqual(NAMES);
      expect(replies.body.replies.every((reply) => !reply.holds && reply.resource === null)).toBe(true);
      expect(typeof replies.body.elapsedMs).toBe('number');
    }
  });

  it('shows in /replies which instance holds a resource', async () => {
    const { body } = await getJson<{ completedBy: string; replies: LookupReply[] }>(`${byName('one').url}/resources/c/replies`);
    expect(body.completedBy).toBe('all');
    expect(body.replies.filter((reply) => reply.holds).map((reply) => reply.instance)).toEqual(['two']);
  });

  it('sums /stats totals from the figures of every instance', async () => {
    for (const instance of instances) {
      const { status, body } = await getJson<{ askedBy: string; completedBy: string; expected: number; instances: InstanceStats[]; totals: Record<string, number> }>(
        `${instance.url}/stats`,
      );
      expect(status).toBe(200);
      expect(body).toMatchObject({ askedBy: instance.name, completedBy: 'all', expected: 3 });
      expect(body.instances.map((stats) => stats.instance)).toEqual(NAMES);
      for (const stats of body.instances) expect(stats.resources).toEqual([...(DEMO_TOPOLOGY.find(({ name }) => name === stats.instance)!.resources)].sort());
      const sum = (pick: (stats: InstanceStats) => number): number => body.instances.reduce((total, stats) => total + pick(stats), 0);
      expect(body.totals).toEqual({
        instances: 3,
        resourcesHeld: sum((stats) => stats.resourcesHeld),
        requestsServed: sum((stats) => stats.requestsServed),
        lookupsAnswered: sum((stats) => stats.lookupsAnswered),
      });
      expect(body.totals.resourcesHeld).toBe(OWNER_OF.size);
      // Every instance has served HTTP requests by now (this very one included) and answered lookups.
      for (const stats of body.instances) {
        expect(stats.requestsServed).toBeGreaterThan(0);
        expect(stats.lookupsAnswered).toBeGreaterThan(0);
      }
    }
  });

  it('counts every HTTP request an instance serves, the page included', async () => {
    const servedByThree = async (): Promise<number> => {
      const { body } = await getJson<{ instances: InstanceStats[] }>(`${byName('one').url}/stats`);
      return body.instances.find((stats) => stats.instance === 'three')!.requestsServed;
    };
    const before = await servedByThree();
    expect((await fetch(`${byName('three').url}/`)).status).toBe(200);
    expect((await fetch(`${byName('three').url}/resources/e`)).status).toBe(200);
    expect(await servedByThree()).toBe(before + 2);
  });

  it('streams one Server-Sent Event per instance, then the completion event', async () => {
    for (const instance of instances) {
      const { contentType, events } = await readEventStream(`${instance.url}/resources/e/stream`);
      expect(contentType).toMatch(/^text\/event-stream/);
      expect(events.map((event) => event.event)).toEqual(['asking', 'reply', 'reply', 'reply', 'done']);
      expect((events[0]!.data as { waitingFor: string[] }).waitingFor).toEqual(NAMES);
      const replies = events.slice(1, 4).map((event) => event.data as LookupReply);
      expect(replies.map((reply) => reply.instance).sort()).toEqual(NAMES);
      expect(replies.filter((reply) => reply.holds).map((reply) => reply.resource?.owner)).toEqual(['three']);
      expect(events[4]!.data).toMatchObject({ completedBy: 'all', outcome: 'found', expected: 3, finished: 3, replies: 3, holders: ['three'], askedBy: instance.name, missing: [] });
    }
  });

  it('streams the completion event for an unknown resource too', async () => {
    const { events } = await readEventStream(`${byName('two').url}/resources/nowhere/stream`);
    expect(events.map((event) => event.event)).toEqual(['asking', 'reply', 'reply', 'reply', 'done']);
    expect(events[4]!.data).toMatchObject({ completedBy: 'all', outcome: 'none', expected: 3, holders: [], missing: [], unanswered: 0 });
  });

  it('makes a DELETE on one instance seen by the others, which drop their cached copies', async () => {
    // Instance two and three cache b (owned by one) on a first remote find.
    for (const name of ['two', 'three']) {
      await getJson(`${byName(name).url}/resources/b`);
      const cached = await getJson<{ source: string }>(`${byName(name).url}/resources/b`);
      expect(cached.body.source).toBe('cache');
    }

    const deleted = await getJson<{ change: unknown; invalidated: number }>(`${byName('one').url}/resources/b`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    expect(deleted.body.change).toEqual({ id: 'b', change: 'delete', by: 'one', via: 'one' });
    expect(deleted.body.invalidated).toBe(3);

    for (const name of ['one', 'two', 'three']) {
      // The invalidation travels over pub/sub beside this HTTP request: allow it a moment to land.
      const miss = await eventually(() => getJson<{ completedBy: string }>(`${byName(name).url}/resources/b`), (result) => result.status === 404);
      expect(miss.body.completedBy).toBe('all');
    }
    const stats = await getJson<{ instances: InstanceStats[] }>(`${byName('two').url}/stats`);
    for (const instanceStats of stats.body.instances) {
      expect(instanceStats.cached).not.toContain('b');
      expect(instanceStats.lastInvalidation).toContain('delete b by one');
      // The `resource.>` wildcard handler saw the same event, once, beside the exact handler.
      expect(instanceStats.recentActivity.filter((line) => line === 'resource.changed: delete b by one')).toHaveLength(1);
    }
    expect(await getJson(`${byName('one').url}/resources/b`, { method: 'DELETE' })).toMatchObject({ status: 404 });
  });

  it('makes a POST on one instance replace the cached copies on the others', async () => {
    const before = await getJson<{ resource: { owner: string }; source: string }>(`${byName('one').url}/resources/d`);
    expect(before.body.resource.owner).toBe('two');
    expect((await getJson<{ source: string }>(`${byName('one').url}/resources/d`)).body.source).toBe('cache');

    const posted = await getJson<{ resource: { id: string; owner: string; version: number; value: unknown }; invalidated: number }>(`${byName('two').url}/resources/d`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ colour: 'blue' }),
    });
    expect(posted.status).toBe(201);
    expect(posted.body.resource).toMatchObject({ id: 'd', owner: 'two', version: 2, value: { colour: 'blue' } });
    expect(posted.body.invalidated).toBe(3);

    const after = await eventually(
      () => getJson<{ resource: { version: number; value: unknown }; source: string }>(`${byName('one').url}/resources/d`),
      (result) => result.body.resource.version === 2,
    );
    expect(after.body).toMatchObject({ source: 'remote', resource: { value: { colour: 'blue' } } });
  });

  it('records every change in the audit trail once, written by one instance of the audit group and readable from any', async () => {
    const posted = await getJson<{ auditEntryId: string; resource: { version: number } }>(`${byName('three').url}/resources/f`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ audited: true }),
    });
    expect(posted.body.auditEntryId).toMatch(/^\d+-\d+$/);
    const trail = await eventually(
      () => getJson<Array<{ entryId: string; id: string; change: string; by: string; version: number; recordedBy: string }>>(`${byName('one').url}/audit`),
      (result) => result.body.some((record) => record.entryId === posted.body.auditEntryId),
    );
    const records = trail.body.filter((record) => record.entryId === posted.body.auditEntryId);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ id: 'f', change: 'put', by: 'three', version: posted.body.resource.version });
    expect(NAMES).toContain(records[0]!.recordedBy);
    // The earlier DELETE and POST of this suite are in the trail too.
    expect(trail.body.map((record) => `${record.change} ${record.id}`)).toEqual(expect.arrayContaining(['delete b', 'put d', 'put f']));
  });

  it('refuses a malformed resource id with 400', async () => {
    const { status } = await getJson(`${byName('one').url}/resources/${encodeURIComponent('no spaces')}`);
    expect(status).toBe(400);
  });

  it('refuses to create a resource another instance holds, with 409 naming the owner', async () => {
    const conflict = await getJson<{ message: string; owner: string }>(`${byName('three').url}/resources/a`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ colour: 'red' }),
    });
    expect(conflict.status).toBe(409);
    expect(conflict.body.owner).toBe('one');
    expect(conflict.body.message).toContain('"one" already holds resource "a"');
    const still = await getJson<{ resource: { owner: string; version: number } }>(`${byName('two').url}/resources/a`);
    expect(still.body.resource).toMatchObject({ owner: 'one', version: 1 });
    const stats = await getJson<{ instances: InstanceStats[] }>(`${byName('one').url}/stats`);
    expect(stats.body.instances.find((entry) => entry.instance === 'three')!.resources).not.toContain('a');
  });

  it('deletes from any instance: a non-owner asks the owner directly, and every instance learns it', async () => {
    const deleted = await getJson<{ change: unknown; invalidated: number }>(`${byName('three').url}/resources/c`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    expect(deleted.body.change).toEqual({ id: 'c', change: 'delete', by: 'two', via: 'three' });
    expect(deleted.body.invalidated).toBe(3);
    for (const instance of instances) expect((await getJson(`${instance.url}/resources/c`)).status).toBe(404);
    const again = await getJson<{ message: string }>(`${byName('three').url}/resources/c`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(again.body.message).toContain('No instance holds resource "c"');
  });

  it('streams every change made on any instance to the live feed of every other instance within a second', async () => {
    const feeds = await Promise.all(instances.map((instance) => openEventStream(`${instance.url}/live`)));
    let four: ResourceServiceProcess | undefined;
    try {
      for (const feed of feeds) {
        const hello = await feed.waitFor((event) => event.event === 'hello');
        expect((hello.data as { instances: Array<{ instance: string; state: string }> }).instances.map(({ instance, state }) => [instance, state])).toEqual(
          NAMES.map((name) => [name, 'answering']),
        );
      }
      const posted = await getJson(`${byName('one').url}/resources/live-1`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"n":1}' });
      expect(posted.status).toBe(201);
      await getJson(`${byName('two').url}/resources/live-1`, { method: 'DELETE' });
      for (const feed of feeds) {
        const put = await feed.waitFor((event) => event.event === 'resource' && (event.data as { id: string; change: string }).change === 'put', 1000);
        expect(put.data).toEqual({ id: 'live-1', change: 'put', by: 'one', via: 'one', version: 1 });
        const removed = await feed.waitFor((event) => event.event === 'resource' && (event.data as { change: string }).change === 'delete', 1000);
        expect(removed.data).toEqual({ id: 'live-1', change: 'delete', by: 'one', via: 'two' });
      }

      // An instance joining, then leaving: every feed shows both.
      four = await ResourceServiceProcess.start({ name: 'four', resources: ['x'], redisUrl: redis.url, namespace });
      const presenceOf = (state: string) => (event: { event: string; data: unknown }) =>
        event.event === 'presence' && (event.data as { instance: string; state: string }).instance === 'four' && (event.data as { state: string }).state === state;
      for (const feed of feeds) await feed.waitFor(presenceOf('answering'), 1000);
      expect(await four.stop()).toBe(0);
      for (const feed of feeds) expect((await feed.waitFor(presenceOf('gone'), 1000)).data).toMatchObject({ reason: 'stopped' });
    } finally {
      for (const feed of feeds) feed.close();
      await four?.stop();
    }
  });

  it('a frozen instance: the lookup ends well before its deadline with 504 naming it, the feed shows it not answering, and all is well once thawed', async () => {
    const feed = await openEventStream(`${byName('one').url}/live`);
    const three = byName('three');
    three.signal('SIGSTOP');
    try {
      const silent = await feed.waitFor((event) => event.event === 'presence' && (event.data as { instance: string; state: string }).instance === 'three' && (event.data as { state: string }).state === 'not answering', 3000);
      expect((silent.data as { reason: string }).reason).toMatch(/^no heartbeat for \d/);
      const partial = await getJson<{ message: string; outcome: string; missing: string[]; missingReasons: Record<string, string>; unanswered: number; replies: LookupReply[] }>(
        `${byName('one').url}/resources/nowhere-frozen`,
      );
      expect(partial.status).toBe(504);
      expect(partial.body).toMatchObject({ outcome: 'partial', missing: ['three'], unanswered: 1, missingReasons: { three: 'silent' } });
      expect(partial.body.replies.map((reply) => reply.instance).sort()).toEqual(['one', 'two']);
      expect(partial.body.message).toContain('three did not answer (silent)');
      // Not at LOOKUP_TIMEOUT_MS (3000 ms): the caller takes the frozen instance for silent within
      // 1.5 x livenessTimeout (1000 ms) of the lookup's start (the README's bound), plus a margin.
      expect(partial.elapsedMs).toBeLessThan(1500 + 750);
      reportFault('demo-frozen-lookup', { livenessTimeoutMs: 1000, lookupTimeoutMs: 3000, elapsedMs: Math.round(partial.elapsedMs) });
    } finally {
      three.signal('SIGCONT');
      feed.close();
    }
    await waitForPresence(instances, NAMES);
    expect((await getJson(`${byName('one').url}/resources/nowhere-frozen`)).status).toBe(404);
  }, 20_000);

  it('serves the library\'s metrics in Prometheus format at /metrics', async () => {
    const url = byName('two').url;
    await getJson(`${url}/resources/nowhere-metrics`);
    const response = await fetch(`${url}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toMatch(/^messaging_client_operation_duration_seconds_count\{[^}]*messaging_destination_name="resource\.find"[^}]*\} [1-9]/m);
    expect(text).toMatch(/^messaging_process_duration_seconds_count\{[^}]*messaging_destination_name="resource\.find"[^}]*\} [1-9]/m);
    expect(text).toMatch(/^nestjs_redis_buffer_instances_live\{[^}]*\} 3$/m);
    expect(text).toMatch(/^messaging_client_sent_messages_total\{[^}]*\} [1-9]/m);
    // Sub-millisecond buckets: a lookup on loopback lands well below the 5 ms of the default advice.
    expect(text).toMatch(/^messaging_client_operation_duration_seconds_bucket\{[^}]*le="0\.0005"\}/m);
  });

  it('answers /health 200 with Redis, 503 within seconds once it is killed, and 200 again when it is back', async () => {
    if (!redis.owned) return;
    const url = byName('one').url;
    const up = await getJson<{ status: string; info: { buffer: { status: string; client: string; transport: string; instances: Array<{ instanceId: string }> } } }>(`${url}/health`);
    expect(up.status).toBe(200);
    expect(up.body.info.buffer).toMatchObject({ status: 'up', client: 'connected', transport: 'connected' });
    expect(up.body.info.buffer.instances.map((i) => i.instanceId).sort()).toEqual(NAMES);
    await redis.kill();
    const down = await eventually(() => getJson(`${url}/health`), (result) => result.status === 503, 5000);
    expect(down.status).toBe(503);
    await redis.restart();
    const back = await eventually(() => getJson(`${url}/health`), (result) => result.status === 200, 15_000);
    expect(back.status).toBe(200);
    await waitForPresence(instances, NAMES);
  }, 30_000);

  it('stops every instance cleanly on SIGTERM', async () => {
    const startedAt = Date.now();
    const timed = await Promise.all(instances.map(async (instance) => ({ instance, code: await instance.stop(), ms: Date.now() - startedAt })));
    const exitCodes = timed.map(({ code }) => code);
    // Open pages' SSE connections and keep-alive sockets do not hold the shutdown up.
    for (const { instance, ms, code } of timed) {
      if (ms >= 2000 || code !== 0) throw new Error(`${instance.name} stopped with ${code} after ${ms} ms; its output:\n${instance.logs.slice(-4000)}`);
    }
    expect(exitCodes).toEqual([0, 0, 0]);
  });
});

/** Retries `probe` until `done` accepts its result, for at most `timeoutMs`; returns the last result. */
async function eventually<T>(probe: () => Promise<T>, done: (result: T) => boolean, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await probe();
    if (done(result) || Date.now() > deadline) return result;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
