// The shipped dashboard and alert rules against a real Prometheus: it scrapes the demo's three
// instances under a short load, loads ops/prometheus/alerts.yml, and every dashboard and alert
// expression is run through its HTTP API. Needs the `prometheus` binary (Debian package
// `prometheus`; .ci/run installs it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stopChild } from '../support/instances.js';
import { sleep } from '../support/raw-redis.js';
import { freePort, startRedis, type TestRedis } from '../support/redis-server.js';
import { startResourceServices, stopResourceServices, type ResourceServiceProcess } from '../support/resource-service.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DASHBOARD = join(root, 'ops', 'grafana', 'nestjs-redis-buffer.json');
const ALERTS = join(root, 'ops', 'prometheus', 'alerts.yml');
const ALERT_TESTS = join(root, 'ops', 'prometheus', 'alerts.test.yml');

interface PromResponse<T> {
  status: 'success' | 'error';
  error?: string;
  data: T;
}

interface Expression {
  readonly where: string;
  readonly expr: string;
}

interface Panel {
  title: string;
  type: string;
  targets?: Array<{ expr: string }>;
}

/** Every target of every panel, with the dashboard's variables as a test run sets them. */
function dashboardExpressions(): Expression[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  return dashboard.panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      where: `panel "${panel.title}"`,
      expr: target.expr.replaceAll('$namespace', '.*').replaceAll('$__rate_interval', '30s'),
    })),
  );
}

/** An alert's signal: its expression without the final threshold comparison (which is false when all is well). */
function signalOf(expr: string): string {
  const match = /^(.*\S)\s*(?:>|<|>=|<=|==|!=)\s*[\d.e+]+$/s.exec(expr.trim());
  if (match === null) throw new Error(`alert expression is not "<signal> <comparison> <threshold>": ${expr}`);
  return match[1]!;
}

describe('ops: the Grafana dashboard and Prometheus alert rules, on a real Prometheus scraping the demo', () => {
  let redis: TestRedis;
  let instances: ResourceServiceProcess[] = [];
  let prometheus: ChildProcess | undefined;
  let prometheusUrl: string;
  let work: string;
  let prometheusOutput = '';
  const namespace = `ops-${randomBytes(4).toString('hex')}`;

  async function api<T>(path: string): Promise<PromResponse<T>> {
    const response = await fetch(`${prometheusUrl}${path}`);
    return (await response.json()) as PromResponse<T>;
  }

  async function query(expr: string): Promise<PromResponse<{ resultType: string; result: unknown[] }>> {
    return api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  }

  beforeAll(async () => {
    redis = await startRedis();
    instances = await startResourceServices(redis.url, namespace);
    work = mkdtempSync(join(tmpdir(), 'prometheus-'));
    const port = await freePort();
    prometheusUrl = `http://127.0.0.1:${port}`;
    const targets = instances.map((instance) => new URL(instance.url).host);
    writeFileSync(
      join(work, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  evaluation_interval: 1s',
        'rule_files:',
        `  - ${JSON.stringify(ALERTS)}`,
        'scrape_configs:',
        '  - job_name: resource-service',
        `    static_configs: [{ targets: ${JSON.stringify(targets)} }]`,
        '',
      ].join('\n'),
    );
    prometheus = spawn('prometheus', [`--config.file=${join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${join(work, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout!.on('data', (chunk: Buffer) => (prometheusOutput += chunk.toString()));
    prometheus.stderr!.on('data', (chunk: Buffer) => (prometheusOutput += chunk.toString()));
    const spawnFailed = new Promise<never>((_, reject) => prometheus!.once('error', (error) => reject(new Error(`cannot start prometheus (apt-get install prometheus): ${error.message}`))));
    const ready = (async () => {
      for (const deadline = Date.now() + 30_000; ; await sleep(200)) {
        const ok = await fetch(`${prometheusUrl}/-/ready`).then((response) => response.ok, () => false);
        if (ok) return;
        if (Date.now() > deadline) throw new Error(`prometheus not ready after 30 s:\n${prometheusOutput}`);
      }
    })();
    await Promise.race([ready, spawnFailed]);

    // A short load: lookups of every resource from every instance (local, remote, and one that no
    // instance holds), and changes, which publish durable audit entries.
    const until = Date.now() + 8_000;
    let n = 0;
    while (Date.now() < until) {
      const instance = instances[n % instances.length]!;
      const id = ['a', 'c', 'e', 'nowhere'][n % 4]!;
      await fetch(`${instance.url}/resources/${id}`).then((response) => response.arrayBuffer());
      if (n % 10 === 0) await fetch(`${instances[0]!.url}/resources/a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n }) }).then((response) => response.arrayBuffer());
      n++;
      await sleep(20);
    }
    // Enough samples of every target for rate() over the windows used here.
    for (const deadline = Date.now() + 20_000; ; await sleep(500)) {
      const samples = await query(`min(count_over_time(up{job="resource-service"}[1m]))`);
      const count = Number((samples.data?.result?.[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0);
      const up = await query('sum(up{job="resource-service"})');
      if (count >= 8 && Number((up.data?.result?.[0] as { value?: [number, string] } | undefined)?.value?.[1] ?? 0) === instances.length) break;
      if (Date.now() > deadline) throw new Error(`prometheus has not scraped the demo enough:\n${prometheusOutput}`);
    }
  }, 120_000);

  afterAll(async () => {
    if (prometheus !== undefined) await stopChild(prometheus, 'SIGTERM', 10_000);
    if (instances.length > 0) await stopResourceServices(instances);
    await redis?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('promtool accepts the alert rules and their unit tests pass', () => {
    const check = spawnSync('promtool', ['check', 'rules', ALERTS], { encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`).toMatch(/SUCCESS: 8 rules found/);
    expect(check.status).toBe(0);
    // One unit test (at least) per alert, each with a case where it fires.
    const alerts = [...readFileSync(ALERTS, 'utf8').matchAll(/^\s*- alert: (\S+)$/gm)].map((match) => match[1]);
    const tested = readFileSync(ALERT_TESTS, 'utf8');
    expect(alerts.filter((alert) => !new RegExp(`alertname: ${alert}\\n\\s+exp_alerts:\\n\\s+- exp_labels:`).test(tested))).toEqual([]);
    const test = spawnSync('promtool', ['test', 'rules', ALERT_TESTS], { encoding: 'utf8', cwd: dirname(ALERT_TESTS) });
    expect(`${test.stdout}${test.stderr}`).toMatch(/SUCCESS/);
    expect(test.status).toBe(0);
  });

  it('every dashboard expression runs and returns data (the demo runs durable handlers, so durable panels too)', async () => {
    const expressions = dashboardExpressions();
    expect(expressions.length).toBeGreaterThanOrEqual(27);
    const empty: string[] = [];
    for (const { where, expr } of expressions) {
      const response = await query(expr);
      expect({ where, status: response.status, error: response.error }).toEqual({ where, status: 'success', error: undefined });
      if (response.data.result.length === 0) empty.push(`${where}: ${expr}`);
    }
    expect(empty).toEqual([]);
  });

  it('Prometheus loaded every alert rule and evaluates each without error; every signal returns data', async () => {
    let rules: Array<{ name: string; query: string; health: string; lastError?: string }> = [];
    // Rules are evaluated every second once loaded: wait for one evaluation of each.
    for (const deadline = Date.now() + 10_000; ; await sleep(250)) {
      const response = await api<{ groups: Array<{ rules: typeof rules }> }>('/api/v1/rules?type=alert');
      rules = response.data.groups.flatMap((group) => group.rules);
      if (rules.length > 0 && rules.every((rule) => rule.health !== 'unknown')) break;
      if (Date.now() > deadline) break;
    }
    expect(rules.map((rule) => rule.name).sort()).toEqual([
      'RedisBufferDurableBacklog',
      'RedisBufferDurableDeadLetters',
      'RedisBufferDurableGroupLagging',
      'RedisBufferDurableRunTwice',
      'RedisBufferGathersPartial',
      'RedisBufferInstanceSilent',
      'RedisBufferMessagesForged',
      'RedisBufferRedisUnreachable',
    ]);
    for (const rule of rules) expect({ name: rule.name, health: rule.health, lastError: rule.lastError ?? '' }).toEqual({ name: rule.name, health: 'ok', lastError: '' });
    const empty: string[] = [];
    for (const rule of rules) {
      const response = await query(signalOf(rule.query));
      expect({ name: rule.name, status: response.status }).toEqual({ name: rule.name, status: 'success' });
      if (response.data.result.length === 0) empty.push(rule.name);
    }
    expect(empty).toEqual([]);
    // Under a healthy load, nothing pages.
    const firing = await api<{ alerts: Array<{ labels: { alertname: string }; state: string }> }>('/api/v1/alerts');
    expect(firing.data.alerts.filter((alert) => alert.state === 'firing').map((alert) => alert.labels.alertname)).toEqual([]);
  });

  it('the demo\'s /metrics: durations in seconds with _seconds names, namespace and instance id on every series, the service named', async () => {
    const text = await (await fetch(`${instances[0]!.url}/metrics`)).text();
    expect(text).toMatch(/^target_info\{service_name="resource-service"/m);
    const families = new Map<string, { type?: string; unit?: string }>();
    for (const [, kind, name, value] of text.matchAll(/^# (TYPE|UNIT) (\S+) (\S+)$/gm)) {
      const family = families.get(name!) ?? {};
      if (kind === 'TYPE') family.type = value;
      else family.unit = value;
      families.set(name!, family);
    }
    const histograms = [...families].filter(([, family]) => family.type === 'histogram').map(([name]) => name);
    expect(histograms).toEqual(expect.arrayContaining(['messaging_client_operation_duration_seconds', 'messaging_process_duration_seconds']));
    for (const name of histograms) {
      // A histogram in seconds says so in its name; the others count instances.
      if (families.get(name)!.unit === 's') expect(name).toMatch(/_seconds$/);
      else expect(families.get(name)!.unit).toBe('{instance}');
    }
    const counters = [...families].filter(([name, family]) => family.type === 'counter' && name.startsWith('nestjs_redis_buffer_'));
    expect(counters.length).toBeGreaterThan(5);
    for (const [name, family] of counters) expect({ name, unit: family.unit }).toEqual({ name, unit: expect.stringMatching(/^\{[a-z]+\}$/) });
    expect(families.get('messaging_client_sent_messages_total')?.unit).toBe('{message}');
    const series = text.split('\n').filter((line) => /^(messaging|nestjs_redis_buffer)_/.test(line));
    expect(series.length).toBeGreaterThan(50);
    const unlabelled = series.filter((line) => !line.includes(`nestjs_redis_buffer_namespace="${namespace}"`) || !/nestjs_redis_buffer_instance_id="[^"]+"/.test(line) || !line.includes('messaging_system="redis"'));
    expect(unlabelled).toEqual([]);
    // Every pattern's duration is by pattern, never by Redis channel; a destination is what a sender
    // named, never a wildcard: the binding that took it is the subscription.
    expect(text).not.toMatch(/messaging_destination_name="[^"]*:req:/);
    expect(text).not.toMatch(/messaging_destination_name="(?:[^"]*\.)?[*>](?:\.[^"]*)?"/);
    // The demo's activity feed is bound to the wildcard resource.>: its runs are by topic and binding.
    expect(text).toMatch(/^messaging_process_duration_seconds_count\{[^}]*messaging_destination_name="resource\.changed"[^}]*messaging_destination_subscription_name="resource\.>"/m);
    // Durations carry the conventions' operation attributes and the Redis server.
    const durations = series.filter((line) => /^messaging_(client_operation|process)_duration_seconds_count\{/.test(line));
    expect(durations.length).toBeGreaterThan(3);
    expect(durations.filter((line) => !/messaging_operation_name="(send|process)"/.test(line) || !/messaging_operation_type="(send|process)"/.test(line) || !/server_address="[^"]+"/.test(line) || !/server_port="\d+"/.test(line))).toEqual([]);
    // Durable group series name their group and the pattern it is bound to.
    const groups = series.filter((line) => /^nestjs_redis_buffer_durable_(lag|pending|oldest_pending_age_seconds|retries_total|dead_letters_total)\{/.test(line));
    expect(groups.length).toBeGreaterThanOrEqual(5);
    expect(groups.filter((line) => !/messaging_destination_subscription_name="[^"]+"/.test(line) || !/messaging_consumer_group_name="[^"]+"/.test(line))).toEqual([]);
    // The error, drop and loss series the dashboard and alerts read exist (at 0 until the first one).
    const expectedCounters = [
      'nestjs_redis_buffer_requests_completed_total',
      'nestjs_redis_buffer_refusals_total',
      'nestjs_redis_buffer_instances_gone_total',
      'nestjs_redis_buffer_messages_malformed_total',
      'nestjs_redis_buffer_messages_forged_total',
      'nestjs_redis_buffer_messages_replayed_total',
      'nestjs_redis_buffer_replies_resent_total',
      'nestjs_redis_buffer_replies_publish_failures_total',
      'nestjs_redis_buffer_deliveries_repeated_total',
      'nestjs_redis_buffer_reconnects_total',
      'nestjs_redis_buffer_durable_late_acks_refused_total',
      'nestjs_redis_buffer_durable_forged_total',
      'nestjs_redis_buffer_durable_filtered_total',
    ];
    expect(expectedCounters.filter((name) => families.get(name)?.type !== 'counter')).toEqual([]);
    for (const reason of ['silent', 'unreachable', 'left']) expect(text).toMatch(new RegExp(`^nestjs_redis_buffer_instances_gone_total\\{[^}]*nestjs_redis_buffer_reason="${reason}"`, 'm'));
  });
});
