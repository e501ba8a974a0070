// The demo topology for real: redis-server plus three resource-service instances as separate Node
// processes, checked over HTTP against every instance.
import { randomBytes } from 'node:crypto';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { DEMO_TOPOLOGY, readEventStream, ResourceServiceProcess, startResourceServices, stopResourceServices } from '../support/resource-service.js';

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

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startResourceServices(redis.url, `demo-${randomBytes(4).toString('hex')}`);
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
      expect(events.map((event) => event.event)).toEqual(['reply', 'reply', 'reply', 'done']);
      const replies = events.slice(0, 3).map((event) => event.data as LookupReply);
      expect(replies.map((reply) => reply.instance).sort()).toEqual(NAMES);
      expect(replies.filter((reply) => reply.holds).map((reply) => reply.resource?.owner)).toEqual(['three']);
      expect(events[3]!.data).toMatchObject({ completedBy: 'all', expected: 3, finished: 3, replies: 3, holders: ['three'], askedBy: instance.name });
    }
  });

  it('streams the completion event for an unknown resource too', async () => {
    const { events } = await readEventStream(`${byName('two').url}/resources/nowhere/stream`);
    expect(events.map((event) => event.event)).toEqual(['reply', 'reply', 'reply', 'done']);
    expect(events[3]!.data).toMatchObject({ completedBy: 'all', expected: 3, holders: [] });
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
    expect(deleted.body.change).toEqual({ id: 'b', change: 'delete', by: 'one' });
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

  it('stops every instance cleanly on SIGTERM', async () => {
    const exitCodes = await stopResourceServices(instances);
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
