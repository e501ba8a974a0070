// Fault suite: one instance cut off from Redis by a network that stops forwarding without closing
// anything (a TCP proxy that holds every byte), under a caller gathering all the while. Callers take
// it for silent; the instance itself notices (a log line, `stats.cutOffs`), says hello again once
// the network forwards again, and drops the requests that waited in the network past their `ttl`
// instead of running them for callers that stopped waiting long ago.
// The figures reported with TEST_LOGS=1 ("FAULT cut-off") are the ones in docs/reliability.md.
import { BufferClient, Responder } from 'nestjs-redis-buffer';
import { LatencyProxy } from '../support/latency-proxy.js';
import { sleep } from '../support/raw-redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { quietLogs, reportFault } from '../support/captured-logs.js';

quietLogs([]);
const namespace = 'fault-cut-off';
const TIMEOUT = 1000;
const CUT_MS = 6000;
const IN_FLIGHT = 8;

interface Sent {
  at: number;
  result?: { completedBy: string; replies: string[]; missing: Record<string, string> };
}

describe('fault: one instance cut off from Redis without a reset', () => {
  let redis: TestRedis;
  let proxy: LatencyProxy;

  beforeAll(async () => {
    redis = await startRedis();
    proxy = await LatencyProxy.start({ host: '127.0.0.1', port: redis.port }, 0);
  });

  afterAll(async () => {
    await proxy?.stop();
    await redis?.stop();
  });

  it('callers name it silent; it notices, says hello again once forwarded, and runs none of the requests that waited past their ttl', async () => {
    const lines: string[] = [];
    const logger = { log: (line: string) => void lines.push(`log ${line}`), warn: (line: string) => void lines.push(`warn ${line}`), error: (line: string) => void lines.push(`error ${line}`) };
    const quiet = { log: () => undefined, warn: () => undefined, error: () => undefined };
    const ran = { direct: 0, cut: [] as number[] };
    const direct = new Responder({ redis: redis.url, namespace, instanceId: 'direct' }, { logger: quiet }).handle('work', () => {
      ran.direct++;
      return 'direct';
    });
    const cut = new Responder({ redis: proxy.url, namespace, instanceId: 'cut' }, { logger }).handle('work', () => {
      ran.cut.push(Date.now());
      return 'cut';
    });
    await Promise.all([direct.listen(), cut.listen()]);
    const client = new BufferClient({ redis: redis.url, namespace, timeout: TIMEOUT });
    await client.connect();
    try {
      const warm = await client.gather<string>('work', null);
      expect(warm.replies.map((reply) => reply.data).sort()).toEqual(['cut', 'direct']);

      const sent: Sent[] = [];
      let running = true;
      const loops = Array.from({ length: IN_FLIGHT }, async () => {
        while (running) {
          const entry: Sent = { at: Date.now() };
          sent.push(entry);
          const result = await client.gather<string>('work', null);
          entry.result = { completedBy: result.completedBy, replies: result.replies.map((reply) => reply.data), missing: { ...result.missingReasons } };
          await sleep(20);
        }
      });
      await sleep(300);
      const cutAt = Date.now();
      proxy.hold();
      await sleep(CUT_MS);
      const releasedAt = Date.now();
      const ranBefore = ran.cut.length;
      proxy.release();
      // Back: whole again, with its reply.
      let backAfterMs: number | undefined;
      for (const deadline = Date.now() + 5000; Date.now() < deadline; await sleep(50)) {
        const result = await client.gather<string>('work', null);
        if (result.completedBy === 'all' && result.missing.length === 0 && result.replies.length === 2) {
          backAfterMs = Date.now() - releasedAt;
          break;
        }
      }
      running = false;
      await Promise.all(loops);
      await sleep(200);

      // Callers named it while it was cut off, never blaming the one that was there.
      const during = sent.filter((entry) => entry.at > cutAt + 1500 && entry.at < releasedAt - TIMEOUT && entry.result !== undefined);
      expect(during.length).toBeGreaterThan(0);
      for (const { result } of during) {
        expect(result!.replies).toEqual(['direct']);
        expect(Object.keys(result!.missing)).toEqual(['cut']);
      }
      // It noticed, within about two liveness bounds, and said so; and it noticed Redis again.
      const noticed = lines.find((line) => line.startsWith('warn') && line.includes('Redis has not answered'));
      expect(noticed).toBeDefined();
      expect(lines.some((line) => line.startsWith('log') && line.includes('Redis answers again'))).toBe(true);
      expect(cut.stats.cutOffs).toBe(1);
      expect(backAfterMs).toBeDefined();
      // The requests published while it was cut off reached it all at once when the network
      // forwarded again. Those older than their ttl were dropped unrun; the rest ran.
      const publishedDuringCut = sent.filter((entry) => entry.at >= cutAt && entry.at < releasedAt).length;
      const stale = sent.filter((entry) => entry.at >= cutAt && entry.at < releasedAt - TIMEOUT - 200).length;
      const ranAfter = ran.cut.length - ranBefore;
      expect(cut.stats.waitedPast).toBeGreaterThanOrEqual(stale);
      expect(cut.stats.waitedPast).toBeLessThanOrEqual(publishedDuringCut);
      // What ran after the release: the requests still within their ttl and the new ones, not the backlog.
      const fresh = sent.filter((entry) => entry.at >= releasedAt - TIMEOUT - 200).length;
      expect(ranAfter).toBeLessThanOrEqual(fresh + 1);
      reportFault('cut-off', { cutMs: CUT_MS, timeoutMs: TIMEOUT, publishedDuringCut, droppedUnrun: cut.stats.waitedPast, ranAfterRelease: ranAfter, backAfterMs, noticed: noticed?.replace(/^warn /, '').slice(0, 80) });
    } finally {
      await client.close();
      await Promise.all([direct.close(), cut.close()]);
    }
  }, 60_000);
});
