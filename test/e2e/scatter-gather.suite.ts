import {
  BufferClient,
  BufferTimeoutError,
  InvalidOptionsError,
  NoRespondersError,
  PayloadTooLargeError,
  type BufferReply,
} from 'nestjs-redis-buffer';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { startInstances, stopAll, type InstanceProcess } from '../support/instances.js';
import { sleep } from '../support/raw-redis.js';
import type { RedisTarget } from '../support/redis-target.js';
import { quietLogs } from '../support/captured-logs.js';

const namespace = 'e2e';

/**
 * Every promise of the README about scatter-gather, against three instance processes: run once on
 * one Redis server (scatter-gather.e2e-spec.ts) and once on a Redis Cluster
 * (cluster/scatter-gather.cluster.e2e-spec.ts), where every channel is sharded.
 */
export function describeScatterGather(deployment: string, startTarget: () => Promise<RedisTarget>): void {
  describe(`scatter-gather across three instances on ${deployment}`, () => {
    // The warnings the bad-input tests provoke on purpose: captured and asserted, not printed.
    const logs = quietLogs([/^Dropped a /, /^Redis: /]);
    let target: RedisTarget;
    let instances: InstanceProcess[];
    let client: BufferClient;

    beforeAll(async () => {
      target = await startTarget();
      instances = await startInstances([
        { instanceId: 'alpha', connection: target.connection, namespace, resources: ['a', 'b'], env: { MAX_PAYLOAD_BYTES: '65536' } },
        { instanceId: 'beta', connection: target.connection, namespace, resources: ['c'], env: { MAX_PAYLOAD_BYTES: '65536' } },
        { instanceId: 'gamma', connection: target.connection, namespace, resources: ['d', 'e', 'f'], env: { MAX_PAYLOAD_BYTES: '65536' } },
      ]);
      client = new BufferClient({ ...target.connection, namespace, timeout: 3000 });
      await client.connect();
    }, 60_000);

    afterAll(async () => {
      await client?.close();
      await stopAll(instances ?? []);
      await target?.close();
      await target?.stop();
    });

    describe('completion rules', () => {
      it('completes with "all" once the three instances Redis counted have answered', async () => {
        const result = await client.gather<number>('count', null);
        expect(result.completedBy).toBe('all');
        expect(result.expected).toBe(3);
        expect(result.finished).toBe(3);
        expect(result.replies.map((r) => [r.instanceId, r.data]).sort()).toEqual([
          ['alpha', 2],
          ['beta', 1],
          ['gamma', 3],
        ]);
        expect(result.elapsedMs).toBeLessThan(3000);
      });

      it('send emits every reply value and completes', async () => {
        const names = await lastValueFrom(client.send<string>('whoami', null).pipe(toArray()));
        expect(names.sort()).toEqual(['alpha', 'beta', 'gamma']);
      });

      it('"until" completes on the one instance that holds the resource', async () => {
        const result = await client.gather<{ owner: string } | null>('resource.find', 'c', { until: (r) => r.ok && r.data !== null });
        expect(result.completedBy).toBe('until');
        expect(result.replies.find((r) => r.data !== null)?.data).toEqual({ id: 'c', owner: 'beta' });
      });

      it('an unknown resource is known to be missing as soon as every instance said no, well before the timeout', async () => {
        const result = await client.gather<unknown>('resource.find', 'zzz', { until: (r) => r.ok && r.data !== null, timeout: 3000 });
        expect(result.completedBy).toBe('all');
        expect(result.replies.every((r) => r.data === null)).toBe(true);
        expect(result.replies).toHaveLength(3);
        expect(result.elapsedMs).toBeLessThan(1500);
      });

      it('"quorum" completes after that many replies', async () => {
        const result = await client.gather('whoami', null, { quorum: 2 });
        expect(result.completedBy).toBe('quorum');
        expect(result.replies).toHaveLength(2);
        expect(result.expected).toBe(3);
      });

      it('"stall" completes when replies stop coming although the streams never end', async () => {
        const result = await client.gather<string>('stream.hang', null, { stall: 300, timeout: 5000 });
        expect(result.completedBy).toBe('stall');
        expect(result.replies.map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma']);
        expect(result.finished).toBe(0);
        expect(result.elapsedMs).toBeLessThan(2000);
      });

      it('"timeout" is a hard bound over stall: a stream that never pauses still ends on time', async () => {
        const started = Date.now();
        const result = await client.gather<number>('stream.tick', null, { stall: 300, timeout: 800 });
        expect(result.completedBy).toBe('timeout');
        expect(result.expected).toBe(3);
        expect(result.replies.length).toBeGreaterThan(3);
        expect(Date.now() - started).toBeLessThan(800 + 500);
      });

      it('scatter and send error with BufferTimeoutError carrying what arrived and how many were expected', async () => {
        const error = await lastValueFrom(client.scatter<string>('stream.hang', null, { timeout: 500 })).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(BufferTimeoutError);
        const timeout = error as BufferTimeoutError<string>;
        expect(timeout.code).toBe('BUFFER_TIMEOUT');
        expect(timeout.expected).toBe(3);
        expect(timeout.finished).toBe(0);
        expect(timeout.replies.map((r) => (r.ok ? r.data : null)).sort()).toEqual(['alpha', 'beta', 'gamma']);
        await expect(lastValueFrom(client.send('stream.hang', null, { timeout: 300 }))).rejects.toBeInstanceOf(BufferTimeoutError);
      });

      it('nobody listening fails at once with NoRespondersError, not after the timeout', async () => {
        const started = Date.now();
        const error = await client.gather('nobody.handles.this', null, { timeout: 5000 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(NoRespondersError);
        expect((error as NoRespondersError).code).toBe('BUFFER_NO_RESPONDERS');
        expect((error as NoRespondersError).pattern).toBe('nobody.handles.this');
        expect(Date.now() - started).toBeLessThan(1000);
        await expect(lastValueFrom(client.send('nobody.handles.this', 1))).rejects.toBeInstanceOf(NoRespondersError);
      });
    });

    describe('direct requests', () => {
      it('"to" reaches only the named instance', async () => {
        const result = await client.gather('whoami', null, { to: 'beta' });
        expect(result.expected).toBe(1);
        expect(result.replies.map((r) => r.data)).toEqual(['beta']);
        expect(result.completedBy).toBe('all');
      });

      it('"to" an instance that does not exist fails at once with NoRespondersError', async () => {
        const error = await client.gather('whoami', null, { to: 'nobody' }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(NoRespondersError);
        expect((error as NoRespondersError).to).toBe('nobody');
      });

      it('"to" an instance without a handler for the pattern answers with a no-handler error', async () => {
        const result = await client.gather('not.a.pattern', null, { to: 'alpha' });
        expect(result.errors).toHaveLength(1);
        expect(result.errors[0]!.error).toMatchObject({ code: 'BUFFER_NO_HANDLER' });
      });
    });

    describe('context, headers and deadlines', () => {
      it('headers, the sender, the request id and the deadline reach the handler', async () => {
        const before = Date.now();
        const result = await client.gather<Record<string, unknown>>('ctx', null, { headers: { 'x-tenant': 't1' }, timeout: 2000 });
        expect(result.replies).toHaveLength(3);
        for (const reply of result.replies) {
          expect(reply.data.headers).toEqual({ 'x-tenant': 't1' });
          expect(reply.data.senderId).toBe(client.instanceId);
          expect(reply.data.instanceId).toBe(reply.instanceId);
          expect(reply.data.pattern).toBe('ctx');
          expect(typeof reply.data.requestId).toBe('string');
          expect(reply.data.deadline).toBeGreaterThanOrEqual(before + 2000);
          expect(reply.data.deadline).toBeLessThanOrEqual(Date.now() + 2000);
          expect(reply.data.remainingMs).toBeGreaterThan(1000);
        }
        expect(new Set(result.replies.map((r) => r.data.requestId)).size).toBe(1);
      });

      it('an instance refuses a request that arrives past its deadline, naming the reason, instead of staying silent', async () => {
        const inbox = await target.collect(`${namespace}:inbox:by-hand-expired`);
        try {
          const envelope = (id: string, timing: Record<string, number>) =>
            JSON.stringify({ v: 1, kind: 'request', id, pattern: 'whoami', from: 'test', replyTo: `${namespace}:inbox:by-hand-expired`, ...timing, headers: {}, data: null });
          expect(await target.publish(`${namespace}:req:whoami`, envelope('expired-1', { deadline: Date.now() - 1000 }))).toBe(3);
          expect(await target.publish(`${namespace}:req:whoami`, envelope('live-1', { ttl: 5000 }))).toBe(3);
          for (let waited = 0; inbox.messages.length < 6 && waited < 3000; waited += 20) await sleep(20);
          const replies = inbox.messages.flatMap((m) => [JSON.parse(m)].flat()) as Array<{ id: string; refused?: boolean; error?: { code: string }; data?: string }>;
          expect(replies.filter((r) => r.id === 'live-1').map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma']);
          const refusals = replies.filter((r) => r.id === 'expired-1');
          expect(refusals).toHaveLength(3);
          for (const refusal of refusals) expect(refusal).toMatchObject({ refused: true, done: true, error: { code: 'BUFFER_EXPIRED' } });
        } finally {
          await inbox.close();
        }
      });
      it('instances answer in compact replies only to a request that asks for them, and the client reads both forms', async () => {
        const inbox = await target.collect(`${namespace}:inbox:by-hand-forms`);
        try {
          const envelope = (id: string, extra: Record<string, unknown>) =>
            JSON.stringify({ v: 1, kind: 'request', id, pattern: 'whoami', from: 'test', replyTo: `${namespace}:inbox:by-hand-forms`, ttl: 5000, data: null, ...extra });
          expect(await target.publish(`${namespace}:req:whoami`, envelope('objects-1', {}))).toBe(3);
          expect(await target.publish(`${namespace}:req:whoami`, envelope('compact-1', { cr: 1 }))).toBe(3);
          for (let waited = 0; inbox.messages.length < 6 && waited < 3000; waited += 20) await sleep(20);
          const elements = inbox.messages.flatMap((m) => [JSON.parse(m)].flat()) as unknown[];
          const objects = elements.filter((e): e is { id: string; data: string } => !Array.isArray(e));
          const arrays = elements.filter((e): e is [string, string, number, boolean, string] => Array.isArray(e));
          expect(objects.map((o) => [o.id, o.data]).sort()).toEqual([['objects-1', 'alpha'], ['objects-1', 'beta'], ['objects-1', 'gamma']]);
          expect(arrays.map((a) => [a[0], a[1], a[2], a[3], a[4]]).sort()).toEqual([
            ['compact-1', 'alpha', 0, true, 'alpha'],
            ['compact-1', 'beta', 0, true, 'beta'],
            ['compact-1', 'gamma', 0, true, 'gamma'],
          ]);
          // A compact reply is never a message of its own: a lone one is a batch of one (beside
          // an object reply to the other request when the instance sent both in one turn).
          for (const message of inbox.messages.map((m) => JSON.parse(m) as unknown)) {
            if (Array.isArray(message)) for (const element of message) expect(typeof element === 'object' && element !== null).toBe(true);
            else expect(typeof message === 'object' && message !== null).toBe(true);
          }
        } finally {
          await inbox.close();
        }
        // A hand-written instance that answers in both forms, a duplicate among them.
        const listener = await target.subscribe(`${namespace}:req:forms.test`, (message) => {
          const request = JSON.parse(message) as { id: string; replyTo: string; cr?: number };
          expect(request.cr).toBe(1);
          const id = JSON.stringify(request.id);
          void target.publish(request.replyTo, `[[${id},"hand-forms",0,false,"a"],[${id},"hand-forms",0,false,"a"],{"v":1,"kind":"reply","id":${id},"from":"hand-forms","seq":1,"done":false,"data":"b"},[${id},"hand-forms",2,true,null]]`);
        });
        await target.publish(`${namespace}:members`, JSON.stringify({ v: 1, kind: 'hello', id: 'h2', from: 'hand-forms', inc: 'hand-forms-1', patterns: ['forms.test'], events: [] }));
        await sleep(50);
        try {
          const before = { ...client.stats };
          const result = await client.gather<string | null>('forms.test', null);
          expect(result.replies.map((r) => [r.instanceId, r.data])).toEqual([['hand-forms', 'a'], ['hand-forms', 'b'], ['hand-forms', null]]);
          expect(result.completedBy).toBe('all');
          expect(client.stats.duplicateReplies - before.duplicateReplies).toBe(1);
          expect(client.stats.malformedMessages - before.malformedMessages).toBe(0);
        } finally {
          await listener.close();
        }
      });

      it('the client sends compact requests after a head once every instance it waits for says "cq":1, and objects while one does not', async () => {
        // A hand-written instance beside the three: it reads objects until its hello says "cq":1.
        let readsCompact = false;
        const received: unknown[] = [];
        const listener = await target.subscribe(`${namespace}:req:whoami`, (message) => {
          const parsed = JSON.parse(message) as unknown;
          received.push(parsed);
          const batch = Array.isArray(parsed) ? parsed : [parsed];
          const head = batch[0] as { kind?: string; replyTo?: string };
          const requests: Array<{ id: string; replyTo: string }> =
            head.kind === 'requests' ? (batch.slice(1) as Array<[string]>).map(([id]) => ({ id, replyTo: head.replyTo! })) : (batch as Array<{ id: string; replyTo: string }>);
          for (const { id, replyTo } of requests) void target.publish(replyTo, `[[${JSON.stringify(id)},"hand-cq",0,true,"hand-cq"]]`);
        });
        const hello = (extra: Record<string, unknown>) => JSON.stringify({ v: 1, kind: 'hello', id: 'h-cq', from: 'hand-cq', inc: 'hand-cq-1', patterns: ['whoami'], events: [], ...extra });
        try {
          await target.publish(`${namespace}:members`, hello({}));
          await sleep(50);
          const first = await client.gather<string>('whoami', null);
          expect(first.completedBy).toBe('all');
          expect(first.replies.map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma', 'hand-cq']);
          // An object: the instance did not say it reads compact requests.
          expect(received).toEqual([expect.objectContaining({ v: 1, kind: 'request', pattern: 'whoami', from: client.instanceId, cr: 1 })]);

          readsCompact = true;
          await target.publish(`${namespace}:members`, hello({ cq: 1 }));
          await sleep(50);
          received.length = 0;
          const second = await client.gather<string>('whoami', 'x', { headers: { 'x-tenant': 't1' } });
          expect(second.completedBy).toBe('all');
          expect(second.replies.map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma', 'hand-cq']);
          // A head with what the caller's requests share, then [id, pattern, ttl, data, headers].
          expect(received).toHaveLength(1);
          const [head, ...requests] = received[0] as [Record<string, unknown>, ...unknown[][]];
          expect(head).toEqual({ v: 1, kind: 'requests', from: client.instanceId, replyTo: expect.stringMatching(new RegExp(`^${namespace}:inbox:`)), cr: 1, sent: expect.any(Number) });
          expect(Math.abs((head.sent as number) - Date.now())).toBeLessThan(5000);
          expect(requests).toEqual([[expect.any(String), 'whoami', expect.any(Number), 'x', { 'x-tenant': 't1' }]]);
          expect(requests[0]![2]).toBeGreaterThan(2000);
          expect(requests[0]![2]).toBeLessThanOrEqual(3000);
          expect(readsCompact).toBe(true);
        } finally {
          await target.publish(`${namespace}:members`, JSON.stringify({ v: 1, kind: 'bye', id: 'b-cq', from: 'hand-cq', inc: 'hand-cq-1' }));
          await listener.close();
          await sleep(50);
        }
        // Without it, the three real instances get compact requests and answer them.
        const third = await client.gather<string>('whoami', null);
        expect(third.completedBy).toBe('all');
        expect(third.replies.map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma']);
      });
    });

    describe('errors', () => {
      it('a handler that throws answers with an error for that instance, and gather goes on', async () => {
        const result = await client.gather('fail', null);
        expect(result.completedBy).toBe('all');
        expect(result.errors.map((e) => e.instanceId).sort()).toEqual(['alpha', 'beta', 'gamma']);
        expect(result.errors[0]!.error).toEqual({ status: 'error', message: 'Internal server error' });
      });

      it('send errors like ClientProxy, with an RpcException payload intact', async () => {
        const error = await lastValueFrom(client.send('rpc.fail', null)).catch((e: unknown) => e);
        expect(error).toMatchObject({ code: 'E_CUSTOM', detail: { nested: [1, 2, 3] } });
        expect(['alpha', 'beta', 'gamma']).toContain((error as { instance: string }).instance);
      });

      it('scatter emits error replies beside values', async () => {
        const replies = await lastValueFrom(client.scatter('rpc.fail', null).pipe(toArray()));
        expect(replies).toHaveLength(3);
        expect(replies.every((r) => !r.ok)).toBe(true);
      });

      it('a payload over the limit is refused before publishing with PayloadTooLargeError', async () => {
        const small = new BufferClient({ ...target.connection, namespace, maxPayloadBytes: 1024, maxBatchBytes: 1024 });
        try {
          const error = await small.gather('whoami', 'x'.repeat(2000)).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(PayloadTooLargeError);
          expect((error as PayloadTooLargeError).limit).toBe(1024);
          expect(small.stats.requests).toBe(0);
        } finally {
          await small.close();
        }
      });

      it('a reply over the instance limit arrives as a typed error instead', async () => {
        const result = await client.gather('big', 100_000);
        expect(result.errors).toHaveLength(3);
        expect(result.completedBy).toBe('all');
        expect(result.errors[0]!.error).toMatchObject({ code: 'BUFFER_REPLY_TOO_LARGE' });
      });

      it('bad call options fail with InvalidOptionsError naming the option', async () => {
        const error = await client.gather('whoami', null, { quorum: -1 }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidOptionsError);
        expect((error as InvalidOptionsError).option).toBe('quorum');
      });
    });

    describe('streams, duplicates, late replies and cancellation', () => {
      it('an Observable handler streams every value; the instance is done when its stream completes', async () => {
        const result = await client.gather<{ instance: string; n: number }>('stream', 4);
        expect(result.completedBy).toBe('all');
        expect(result.replies).toHaveLength(12);
        for (const id of ['alpha', 'beta', 'gamma']) {
          expect(result.replies.filter((r) => r.instanceId === id).map((r) => r.data.n)).toEqual([0, 1, 2, 3]);
        }
      });

      it('counts a duplicated reply once and drops replies after completion', async () => {
        // A hand-written responder that repeats its reply, then answers again after completion.
        const listener = await target.subscribe(`${namespace}:req:dup.test`, (message) => {
          const request = JSON.parse(message) as { id: string; replyTo: string };
          const reply = (seq: number, done: boolean) => JSON.stringify({ v: 1, kind: 'reply', id: request.id, from: 'hand', seq, done, data: seq });
          void target.publish(request.replyTo, `[${reply(0, false)},${reply(0, false)},${reply(1, true)}]`);
          setTimeout(() => void target.publish(request.replyTo, reply(2, true)), 100);
        });
        // A responder that is not this library introduces itself, as docs/protocol.md asks.
        await target.publish(`${namespace}:members`, JSON.stringify({ v: 1, kind: 'hello', id: 'h1', from: 'hand', inc: 'hand-1', patterns: ['dup.test'], events: [] }));
        await sleep(50);
        try {
          const before = { ...client.stats };
          const result = await client.gather<number>('dup.test', null);
          expect(result.replies.map((r) => r.data)).toEqual([0, 1]);
          expect(result.completedBy).toBe('all');
          await sleep(300);
          expect(client.stats.duplicateReplies - before.duplicateReplies).toBe(1);
          expect(client.stats.lateReplies - before.lateReplies).toBe(1);
          expect(client.inFlight).toBe(0);
        } finally {
          await listener.close();
        }
      });

      it('unsubscribing cancels at once: the pending entry goes, and later replies are dropped as late', async () => {
        const before = client.stats.lateReplies;
        const seen: BufferReply[] = [];
        const subscription = client.scatter('slow', 300).subscribe((reply) => seen.push(reply));
        await sleep(50);
        expect(client.inFlight).toBe(1);
        subscription.unsubscribe();
        expect(client.inFlight).toBe(0);
        await sleep(500);
        expect(seen).toEqual([]);
        expect(client.stats.lateReplies - before).toBe(3);
      });

      it('gather reports each reply to onReply as it arrives, before it resolves', async () => {
        const seen: string[] = [];
        const result = await client.gather<{ instance: string; n: number }>('stream', 2, { onReply: (reply) => seen.push(`${reply.instanceId}:${reply.seq}`) });
        expect(seen).toHaveLength(6);
        expect(seen.sort()).toEqual(result.replies.map((r) => `${r.instanceId}:${r.seq}`).sort());
      });

      it('an aborted signal cancels a gather at once: it rejects with the reason and leaves nothing pending', async () => {
        const controller = new AbortController();
        const before = client.stats.lateReplies;
        const pending = client.gather('slow', 300, { signal: controller.signal });
        await sleep(50);
        expect(client.inFlight).toBe(1);
        controller.abort(new Error('client went away'));
        await expect(pending).rejects.toThrow('client went away');
        expect(client.inFlight).toBe(0);
        await sleep(450);
        expect(client.stats.lateReplies - before).toBe(3);
        const already = AbortSignal.abort(new Error('too late'));
        const requests = client.stats.requests;
        await expect(client.gather('whoami', null, { signal: already })).rejects.toThrow('too late');
        expect(client.stats.requests).toBe(requests);
      });

      it('nothing is sent until the Observable is subscribed', async () => {
        const before = client.stats.requests;
        const cold = client.send('whoami', null);
        await sleep(50);
        expect(client.stats.requests).toBe(before);
        expect(await firstValueFrom(cold)).toMatch(/alpha|beta|gamma/);
      });
    });

    describe('events', () => {
      it('emit reaches every instance, and reports how many received it', async () => {
        const receivers = await lastValueFrom(client.emit('cache.invalidate', 'key-1'));
        expect(receivers).toBe(3);
        await sleep(100);
        const seen = await client.gather<string[]>('events.seen', null);
        expect(seen.replies).toHaveLength(3);
        for (const reply of seen.replies) expect(reply.data).toContain(`key-1@${client.instanceId}`);
      });
    });

    describe('Nest pipeline on this transport', () => {
      it('guards see the headers through BufferContext', async () => {
        const denied = await client.gather('guarded', null);
        expect(denied.errors).toHaveLength(3);
        expect(denied.errors[0]!.error).toMatchObject({ code: 'FORBIDDEN' });
        const allowed = await client.gather('guarded', null, { headers: { 'x-allow': 'yes' } });
        expect(allowed.replies.map((r) => r.data).sort()).toEqual(['alpha', 'beta', 'gamma']);
      });

      it('pipes transform the payload', async () => {
        const result = await client.gather<number>('double', '21');
        expect(result.replies.map((r) => r.data)).toEqual([42, 42, 42]);
      });

      it('interceptors wrap the reply', async () => {
        const result = await client.gather<{ wrapped: string }>('intercepted', null, { to: 'gamma' });
        expect(result.replies[0]!.data).toEqual({ wrapped: 'gamma' });
      });

      it('exception filters shape the error reply', async () => {
        const result = await client.gather('filtered', null, { to: 'alpha' });
        expect(result.errors[0]!.error).toEqual({ filtered: true, message: 'to be filtered' });
      });

      it('an app injects BufferClient from BufferModule.forRootAsync and asks every instance itself', async () => {
        const result = await client.gather<number>('relay.count', null, { to: 'beta' });
        expect(result.replies[0]!.data).toBe(6);
      });
    });

    describe('bad input', () => {
      it('garbage on the request channels is logged and dropped, and the next request succeeds', async () => {
        const garbage = ['not json', '[1,2,3]', '{"v":1}', '{"v":9,"kind":"request"}', 'null', '{"v":1,"kind":"request","id":"x","pattern":"count"}', '\u0000\u0001', '[' + '{}'.repeat(3) + ']'];
        for (const message of garbage) await target.publish(`${namespace}:req:count`, message);
        await target.publish(`${namespace}:direct:alpha`, 'garbage');
        await target.publish(`${namespace}:req:count`, JSON.stringify({ v: 1, kind: 'request', id: 'wrong', pattern: 'whoami', from: 'x', replyTo: 'x', deadline: Date.now() + 1000, headers: {}, data: null }));
        const result = await client.gather<number>('count', null);
        expect(result.completedBy).toBe('all');
        expect(result.replies).toHaveLength(3);
        const stats = await client.gather<{ malformedMessages: number }>('stats', null, { to: 'alpha' });
        expect(stats.replies[0]!.data.malformedMessages).toBeGreaterThanOrEqual(garbage.length + 1);
      });

      it('garbage on the client inbox is dropped and counted, and requests go on', async () => {
        const before = client.stats.malformedMessages;
        // The inbox name is not public, but it is in every request: find it through a handler.
        const ctx = await client.gather<{ requestId: string }>('ctx', null, { to: 'alpha' });
        expect(ctx.replies).toHaveLength(1);
        const channels = await target.channels(`${namespace}:inbox:${client.instanceId}*`);
        expect(channels).toHaveLength(1);
        await target.publish(channels[0]!, '{{{');
        await target.publish(channels[0]!, JSON.stringify({ v: 1, kind: 'event', id: 'x', pattern: 'p', from: 'x', headers: {}, data: 1 }));
        await sleep(100);
        expect(client.stats.malformedMessages - before).toBe(2);
        expect(logs.warnings()).toEqual(expect.arrayContaining([expect.stringContaining('not JSON'), expect.stringContaining('it does not belong there')]));
        expect((await client.gather('whoami', null)).replies).toHaveLength(3);
      });
      it('a reply on the members channel, compact or an object, answers nothing: it is dropped and counted, and the request waits on', async () => {
        // A hand-written instance that sends its replies to the members channel instead of the inbox.
        const listener = await target.subscribe(`${namespace}:req:misplaced.test`, (message) => {
          const request = JSON.parse(message) as { id: string };
          const id = JSON.stringify(request.id);
          void target.publish(`${namespace}:members`, `[[${id},"hand-misplaced",0,false,"a"],{"v":1,"kind":"reply","id":${id},"from":"hand-misplaced","seq":1,"done":true,"data":"b"}]`);
        });
        await target.publish(`${namespace}:members`, JSON.stringify({ v: 1, kind: 'hello', id: 'h3', from: 'hand-misplaced', inc: 'hand-misplaced-1', patterns: ['misplaced.test'], events: [] }));
        await sleep(50);
        try {
          const before = { ...client.stats };
          const result = await client.gather('misplaced.test', null, { timeout: 400 });
          expect(result.completedBy).toBe('timeout');
          expect(result.replies).toEqual([]);
          expect(result.missing).toEqual(['hand-misplaced']);
          expect(client.stats.malformedMessages - before.malformedMessages).toBe(2);
          expect(client.stats.replies - before.replies).toBe(0);
          expect(logs.warnings()).toEqual(expect.arrayContaining([expect.stringContaining(`Dropped a "reply" envelope on "${namespace}:members"`)]));
        } finally {
          await listener.close();
          await target.publish(`${namespace}:members`, JSON.stringify({ v: 1, kind: 'bye', from: 'hand-misplaced', inc: 'hand-misplaced-1' }));
        }
      });
    });

    describe('one subscription per client', () => {
      it('a client holds exactly one inbox subscription, whatever the number of requests', async () => {
        await Promise.all(Array.from({ length: 50 }, () => client.gather('whoami', null)));
        const channels = await target.channels(`${namespace}:inbox:*`);
        // One inbox for this client, one for each instance's own injected client.
        expect(channels.filter((c) => c.includes(client.instanceId))).toHaveLength(1);
        expect(await target.numpat()).toBe(0);
      });
    });

    describe('instance killed mid-gather', () => {
      it('stops waiting for it once it is known gone, and names it in a result marked partial', async () => {
        const extra = await startInstances([
          { instanceId: 'k1', connection: target.connection, namespace: 'e2e-kill' },
          { instanceId: 'k2', connection: target.connection, namespace: 'e2e-kill' },
          { instanceId: 'k3', connection: target.connection, namespace: 'e2e-kill' },
        ]);
        const killClient = new BufferClient({ ...target.connection, namespace: 'e2e-kill' });
        try {
          // Connected first, so that the request is published well before the kill (a cold client
          // on a cluster opens a connection per master first).
          await killClient.connect();
          const pending = killClient.gather<string>('slow', 600, { timeout: 1500 });
          await sleep(150);
          await extra[2]!.stop('SIGKILL');
          const result = await pending;
          expect({ ...result, replies: undefined, errors: undefined }).toMatchObject({ completedBy: 'all', expected: 3, finished: 2, missing: ['k3'], missingReasons: { k3: 'unreachable' } });
          expect(result.replies.map((r) => r.data).sort()).toEqual(['k1', 'k2']);
        } finally {
          await killClient.close();
          await stopAll(extra);
        }
      });
    });
  });
}
