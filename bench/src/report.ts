// Writes bench/RESULTS.md and the two SVG charts from one run's results. Every number here comes
// from `results` as the run produced it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { median, SYSTEM_LABELS, type LoadResult, type SystemName } from './common.js';
import { formatSpeeds } from './cpu-speed.js';
import type { Results } from './run.js';
import { emptyKindCounts, PUBLISH_KINDS, type KindCounts } from './publish-tally.js';

const MEMBERSHIP_KINDS = ['ping', 'pong', 'who', 'hello', 'bye'] as const;

/** The PUBLISHes by kind of every repetition added up, or undefined where none were counted. */
function kindsOf(runs: readonly LoadResult[]): KindCounts | undefined {
  const counted = runs.map((run) => run.publishesByKind).filter((counts): counts is KindCounts => counts !== undefined);
  if (counted.length === 0) return undefined;
  const total = emptyKindCounts();
  for (const counts of counted) {
    for (const kind of PUBLISH_KINDS) {
      total[kind].messages += counts[kind].messages;
      total[kind].envelopes += counts[kind].envelopes;
    }
  }
  return total;
}

/** Membership PUBLISHes (ping, pong, who, hello, bye) as a share of all PUBLISHes. */
function membershipShare(counts: KindCounts | undefined): string {
  if (counts === undefined) return '—';
  const all = PUBLISH_KINDS.reduce((sum, kind) => sum + counts[kind].messages, 0);
  const membership = MEMBERSHIP_KINDS.reduce((sum, kind) => sum + counts[kind].messages, 0);
  return all === 0 ? 'n/a' : `${((100 * membership) / all).toFixed(membership === 0 ? 0 : 3)}%`;
}

const COLORS: Record<SystemName, string> = { base: '#ff9896', lib: '#d62728', otel: '#ff7f0e', naive: '#7f7f7f', coalesced: '#1f77b4', floornest: '#17becf', nats: '#2ca02c', nest: '#9467bd', topic: '#e377c2' };

const ms = (value: number): string => (Number.isFinite(value) ? (value >= 10 ? value.toFixed(1) : value.toFixed(3)) : 'n/a');
const int = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a');
const ratio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a');
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(2);

export interface Target {
  /** `baseline`: the first goals set; `stretch`: the stricter ones set after them. */
  readonly level: string;
  readonly name: string;
  readonly measured: string;
  readonly met: boolean;
}

/** Median over repetitions of the per-repetition ratio a/b (both measured in the same repetition). */
function ratioMedian(a: number[], b: number[]): number {
  return median(a.map((value, index) => value / b[index]!));
}

export function computeTargets(results: Results): Target[] {
  const targets: Target[] = [];
  const has = (system: SystemName): boolean => results.systems.includes(system);
  for (const n of results.config.ns) {
    const main = results.main[n]!;
    const tput = (system: SystemName): number[] => main[system]!.load.map((result) => result.rps);
    const p50 = (system: SystemName): number[] => main[system]!.latency.map((result) => result.p50);
    if (!main.lib) continue;
    if (main.base) {
      const before = ratioMedian(tput('lib'), tput('base'));
      targets.push({ level: 'stretch', name: `N=${n}: throughput @${results.config.concurrency} >= 0.97x ${results.baselineName ?? 'the --baseline build'}`, measured: ratio(before), met: before >= 0.97 });
    }
    if (main.floornest) {
      // The coalesced floor's wire with Nest's handler pipeline: what is left is the transport's own overhead.
      const own = ratioMedian(tput('lib'), tput('floornest'));
      targets.push({ level: 'stretch', name: `N=${n}: throughput @${results.config.concurrency} >= 0.9x the coalesced floor + Nest handler`, measured: ratio(own), met: own >= 0.9 });
    }
    if (!main.naive || !main.coalesced) continue;
    if (has('nats')) {
      const value = ratioMedian(tput('lib'), tput('nats'));
      targets.push({ level: 'stretch', name: `N=${n}: throughput @${results.config.concurrency} >= 4x NATS requestMany`, measured: ratio(value), met: value >= 4 });
    }
    const coalesced = ratioMedian(tput('lib'), tput('coalesced'));
    targets.push({ level: 'stretch', name: `N=${n}: throughput @${results.config.concurrency} >= 0.8x coalesced floor`, measured: ratio(coalesced), met: coalesced >= 0.8 });
    const naive = ratioMedian(tput('lib'), tput('naive'));
    targets.push({ level: 'baseline', name: `N=${n}: throughput @${results.config.concurrency} >= 0.8x naive floor`, measured: ratio(naive), met: naive >= 0.8 });
    const latency = ratioMedian(p50('lib'), p50('naive'));
    targets.push({ level: 'stretch (baseline: <= 1.25x)', name: `N=${n}: p50 @1 in flight <= 1.1x naive floor`, measured: ratio(latency), met: latency <= 1.1 });
    const p99 = (system: SystemName): number[] => main[system]!.load.map((result) => result.p99);
    const tail = ratioMedian(p99('lib'), p99('naive'));
    targets.push({ level: 'stretch', name: `N=${n}: p99 @${results.config.concurrency} in flight no worse than the naive floor's`, measured: `${ms(median(p99('lib')))} vs ${ms(median(p99('naive')))} ms (${ratio(tail)})`, met: tail <= 1 });
    const cpu = (system: SystemName): number[] => main[system]!.load.map((result) => result.callerCpuUsPerRequest ?? NaN);
    const callerCpu = ratioMedian(cpu('lib'), cpu('coalesced'));
    if (Number.isFinite(callerCpu)) {
      targets.push({ level: 'stretch', name: `N=${n}: caller CPU per request <= 1.5x the coalesced floor's`, measured: `${median(cpu('lib')).toFixed(1)} vs ${median(cpu('coalesced')).toFixed(1)} µs (${ratio(callerCpu)})`, met: callerCpu <= 1.5 });
    }
    if (n === 1 && main.nest) {
      const nest = ratioMedian(tput('lib'), tput('nest'));
      targets.push({ level: 'stretch (baseline: >= 1.5x)', name: `N=1: throughput @${results.config.concurrency} >= 10x Nest Transport.REDIS`, measured: ratio(nest), met: nest >= 10 });
    }
  }
  const levels = (system: SystemName): LoadResult[] | undefined => results.levels[system]?.[8];
  const libAt8 = levels('lib');
  const naiveAt8 = levels('naive');
  if (libAt8 && naiveAt8) {
    const tail = ratioMedian(libAt8.map((result) => result.p99), naiveAt8.map((result) => result.p99));
    targets.push({
      level: 'stretch',
      name: `N=${results.config.loadLevelN}: p99 @8 in flight no worse than the naive floor's`,
      measured: `${ms(median(libAt8.map((result) => result.p99)))} vs ${ms(median(naiveAt8.map((result) => result.p99)))} ms (${ratio(tail)})`,
      met: tail <= 1,
    });
  }
  const memory = results.memory.lib;
  if (memory) {
    const first = memory.samples[0]!;
    const last = memory.samples.at(-1)!;
    const growth = last.heapUsed - first.heapUsed;
    targets.push({
      level: 'baseline',
      name: `no heap growth over ${int(last.requests)} requests (threshold: 1 MiB)`,
      measured: `${growth >= 0 ? '+' : ''}${mib(growth)} MiB heap (${mib(first.heapUsed)} -> ${mib(last.heapUsed)}), ${memory.errors} errors`,
      met: growth <= 2 ** 20 && memory.errors === 0,
    });
  }
  const inflight = results.inflight.lib;
  if (inflight) {
    const bytes = median(inflight.map((result) => result.bytesPerRequest));
    targets.push({ level: 'stretch (baseline: < 2,048)', name: '<= 1,000 bytes per request in flight', measured: `${int(bytes)} bytes`, met: bytes <= 1000 });
  }
  const burst = results.burst.lib;
  if (burst) {
    const lost = burst.reduce((sum, result) => sum + result.lost, 0);
    targets.push({ level: 'baseline', name: `${int(results.config.burstCount)} gathers in flight at once: all complete, none lost`, measured: `${lost} lost over ${burst.length} runs`, met: lost === 0 });
  }
  if (results.scale) {
    const errors = [...results.scale.latency, ...results.scale.load].reduce((sum, result) => sum + result.errors, 0) + results.scale.burst.reduce((sum, result) => sum + result.lost, 0);
    targets.push({ level: 'baseline', name: `${results.scale.responders} responding instances: every request answered by all`, measured: `${errors} incomplete`, met: errors === 0 });
  }
  return targets;
}

interface Series {
  readonly system: SystemName;
  readonly points: Array<[number, number]>;
}

function chart(title: string, yLabel: string, ns: number[], series: Series[], logY: boolean, label: (system: SystemName) => string): string {
  const width = 720;
  const height = 420;
  const left = 80;
  const right = 230;
  const top = 40;
  const bottom = 60;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const values = series.flatMap((line) => line.points.map(([, y]) => y)).filter((value) => Number.isFinite(value) && value > 0);
  let yMin = logY ? 10 ** Math.floor(Math.log10(Math.min(...values))) : 0;
  let yMax = logY ? 10 ** Math.ceil(Math.log10(Math.max(...values))) : Math.max(...values) * 1.1;
  if (!(yMax > yMin)) {
    yMin = 0;
    yMax = 1;
  }
  const x = (n: number): number => left + (ns.length === 1 ? plotW / 2 : (ns.indexOf(n) / (ns.length - 1)) * plotW);
  const y = (value: number): number =>
    logY ? top + plotH - ((Math.log10(value) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * plotH : top + plotH - ((value - yMin) / (yMax - yMin)) * plotH;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="${left + plotW / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>`);
  // Grid and y ticks.
  const ticks: number[] = [];
  if (logY) for (let value = yMin; value <= yMax * 1.0001; value *= 10) ticks.push(value);
  else for (let index = 0; index <= 5; index++) ticks.push(yMin + ((yMax - yMin) * index) / 5);
  for (const tick of ticks) {
    const ty = y(tick);
    parts.push(`<line x1="${left}" y1="${ty.toFixed(1)}" x2="${left + plotW}" y2="${ty.toFixed(1)}" stroke="#e0e0e0"/>`);
    const label = tick >= 1000 ? `${(tick / 1000).toLocaleString('en-US')}k` : tick >= 1 ? tick.toFixed(logY ? 0 : 2) : tick.toPrecision(2);
    parts.push(`<text x="${left - 8}" y="${(ty + 4).toFixed(1)}" text-anchor="end">${label}</text>`);
  }
  parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#000"/>`);
  parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#000"/>`);
  for (const n of ns) parts.push(`<text x="${x(n).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">N = ${n}</text>`);
  parts.push(`<text x="${left + plotW / 2}" y="${height - 15}" text-anchor="middle">responding instances (N)</text>`);
  parts.push(`<text transform="translate(18 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${yLabel}${logY ? ' (log scale)' : ''}</text>`);
  series.forEach((line, index) => {
    const color = COLORS[line.system];
    const points = line.points.filter(([, value]) => Number.isFinite(value) && value > 0);
    if (points.length > 1) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2.5" points="${points.map(([n, value]) => `${x(n).toFixed(1)},${y(value).toFixed(1)}`).join(' ')}"/>`);
    for (const [n, value] of points) parts.push(`<circle cx="${x(n).toFixed(1)}" cy="${y(value).toFixed(1)}" r="4" fill="${color}"><title>${label(line.system)}, N=${n}: ${value.toPrecision(4)}</title></circle>`);
    const ly = top + 10 + index * 22;
    parts.push(`<line x1="${left + plotW + 20}" y1="${ly}" x2="${left + plotW + 44}" y2="${ly}" stroke="${color}" stroke-width="2.5"/>`);
    parts.push(`<circle cx="${left + plotW + 32}" cy="${ly}" r="4" fill="${color}"/>`);
    parts.push(`<text x="${left + plotW + 50}" y="${ly + 4}">${label(line.system)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

export function writeReport(results: Results, outDir: string, benchDir: string): string {
  const { config, machine } = results;
  const label = (system: SystemName): string => (system === 'base' && results.baselineName !== undefined ? results.baselineName : SYSTEM_LABELS[system]);
  const targets = computeTargets(results);
  const lines: string[] = [];
  const push = (...text: string[]): void => void lines.push(...text);
  const systemsAt = (n: number): SystemName[] => results.systems.filter((system) => results.main[n]?.[system] !== undefined);

  push('# Benchmark results', '');
  push(
    `Written by \`npm run bench${config.quick ? ' -- --quick' : ''}\` on ${machine.date} (${config.quick ? 'quick' : 'full'} run, ${config.reps} repetitions, ${results.durationSec} s). ` +
      'Every figure is the median over the repetitions; every ratio is the median of per-repetition ratios, each taken between systems measured back to back in the same repetition ' +
      '(systems alternated round-robin, starting one system later each repetition, so drift on this shared machine hits them alike). Raw figures: [results.json](results.json).',
    '',
  );
  // What a user wants first: how fast, against what, on what machine, and how to reproduce it.
  push('## At a glance', '');
  push(
    `One caller asks N instances of a Nest app over one Redis and waits for every instance's answer (scatter-gather), on ${machine.cpu} (${machine.cores} cores, shared), ` +
      `Node ${machine.node}, ${machine.redis}. "vs" columns: this library's throughput divided by the other system's, measured in the same repetitions (higher is better).`,
    '',
  );
  const glanceAgainst = (['nats', 'nest', 'naive', 'coalesced', 'floornest'] as SystemName[]).filter((system) => results.systems.includes(system));
  push(`| N | requests/s, 64 in flight | p50 ms, 1 in flight | ${glanceAgainst.map((system) => `vs ${label(system)}`).join(' | ')} |`);
  push(`|---:|---:|---:|${glanceAgainst.map(() => '---:|').join('')}`);
  for (const n of config.ns) {
    const main = results.main[n];
    if (main?.lib === undefined) continue;
    const cells = glanceAgainst.map((system) => (main[system] ? ratio(ratioMedian(main.lib!.load.map((r) => r.rps), main[system]!.load.map((r) => r.rps))) : '—'));
    push(`| ${n} | ${int(median(main.lib.load.map((r) => r.rps)))} | ${ms(median(main.lib.latency.map((r) => r.p50)))} | ${cells.join(' | ')} |`);
  }
  push(
    '',
    `**Reproduce**: \`npm ci && npm run bench\` (this ${config.quick ? 'quick ' : ''}run: ${config.reps} repetitions, ${Math.max(1, Math.round(results.durationSec / 60))} minutes; \`npm run bench -- --quick\` takes about 3). ` +
      'It starts its own redis-server, and nats-server when one is on the PATH (Debian: `apt-get install redis-server nats-server`), on free loopback ports. ' +
      'The floors are the least any scatter-gather on Redis pub/sub can do: hand-written on plain ioredis, without validation, deadlines, membership or Nest. The targets and what misses them follow the tables.',
    '',
  );
  push('## Machine', '');
  push('| | |', '|---|---|');
  push(`| CPU | ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB RAM (shared, noisy) |`);
  push(`| OS | ${machine.kernel} |`, `| Node | ${machine.node} |`, `| Redis | ${machine.redis} |`, `| nats-server | ${machine.nats} |`);
  push(`| packages | ${Object.entries(machine.packages).map(([name, version]) => `${name} ${version}`).join(', ')} |`);
  push(`| load average at start | ${machine.loadAverageAtStart.join(' / ')} |`, '');
  if (results.natsSkipped) push(`**Skipped:** ${results.natsSkipped}.`, '');

  push('## Setup', '');
  push(
    '- One redis-server (and one nats-server) on free loopback ports, started by the benchmark; nothing else on them.',
    '- Every system has its own caller process (one client) and one responder process hosting all N responding instances, each with its own connections and instance id ' +
      '(the library: one Nest app with N `RedisBufferTransport`s, each with its own `instanceId`; NATS: N connections each subscribed to the subject; floors: N pairs of ioredis connections).',
    `- Request \`{"resource":"res-1042","fields":["owner","version"]}\`, reply \`{"found":false,"owner":null,"version":0}\` from every responder, JSON everywhere.`,
    `- **Latency**: one request in flight for ${config.latencyMs} ms (at most ${int(config.latencyMaxCount)} requests), p50/p99 of each request's round trip until complete (all N replies)${config.latencySlices === undefined ? '' : `; taken in ${config.latencySlices} slices of ${config.latencyMs / config.latencySlices} ms, the systems' slices by turns, each after ${config.latencySliceWarmupMs} ms of requests not recorded, so that the cores' speed, which changes within seconds on this machine, is the same for every system`}.`,
    `- **Throughput**: ${config.concurrency} requests in flight (closed loop), completions counted over ${config.loadMs} ms after ${config.loadWarmupMs} ms warm-up.`,
    '- Systems: (1) this library, `BufferClient.send` with default completion (every receiver answered), responders are Nest apps with `@BufferedPattern`; ' +
      '(2) naive floor: plain ioredis, one PUBLISH per request, N replies to one inbox channel routed by id, one PUBLISH per reply; (3) coalesced floor: the same with per-tick batching of requests per channel and replies per inbox; ' +
      '(4) coalesced floor + Nest handler: the coalesced floor\'s wire exactly, each responder a Nest microservice whose handler is the library\'s own controller method (`@Payload()`), called through the proxy Nest builds: the library against it is the transport\'s own overhead; ' +
      '(5) NATS `requestMany` (strategy `count`, maxMessages N) with @nats-io/transport-node; (6) Nest `ClientRedis` / `Transport.REDIS` (N = 1 only: it keeps the first reply).',
    '',
  );

  push('## Latency (1 in flight) and throughput (64 in flight) against N', '');
  push('| N | system | p50 ms | p99 ms | req/s @64 | p50 ms @64 | p99 ms @64 | errors | membership share of PUBLISHes @64 |', '|---:|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const n of config.ns) {
    for (const system of systemsAt(n)) {
      const entry = results.main[n]![system]!;
      const errors = [...entry.latency, ...entry.load].reduce((sum, result) => sum + result.errors, 0);
      push(
        `| ${n} | ${label(system)} | ${ms(median(entry.latency.map((r) => r.p50)))} | ${ms(median(entry.latency.map((r) => r.p99)))} | ${int(median(entry.load.map((r) => r.rps)))} | ${ms(median(entry.load.map((r) => r.p50)))} | ${ms(median(entry.load.map((r) => r.p99)))} | ${errors} | ${membershipShare(kindsOf(entry.load))} |`,
      );
    }
  }
  push('', '![latency against N](latency.svg)', '', '![throughput against N](throughput.svg)', '');

  push('## CPU time per request', '');
  push(
    `CPU time (user + system) per request completed in the throughput window (${config.concurrency} in flight), read from the caller's own \`process.cpuUsage()\` and from the responder process's \`/proc/<pid>/stat\`, in µs. The N responding instances of a system share one process (one core), so the responder figure is all N together. redis-server's CPU time and its count of PUBLISH commands come from its \`INFO\` at the window's start and end; fewer PUBLISHes per request means more messages coalesced into one. Median of the repetitions.`,
    '',
  );
  push('| N | system | caller µs/request | responders µs/request | redis-server µs/request | PUBLISHes/request |');
  push('|---:|---|---:|---:|---:|---:|');
  for (const n of config.ns) {
    const main = results.main[n];
    if (main === undefined) continue;
    for (const system of results.systems) {
      const entry = main[system];
      if (entry === undefined) continue;
      const caller = entry.load.map((r) => r.callerCpuUsPerRequest).filter((v): v is number => v !== undefined);
      const responder = entry.load.map((r) => r.responderCpuUsPerRequest).filter((v): v is number => v !== undefined);
      const redis = entry.load.map((r) => r.redisCpuUsPerRequest).filter((v): v is number => v !== undefined);
      const publishes = entry.load.map((r) => r.publishesPerRequest).filter((v): v is number => v !== undefined);
      const cell = (values: number[], digits: number): string => (values.length > 0 ? median(values).toFixed(digits) : 'n/a');
      // NATS does not go through Redis.
      const viaRedis = system !== 'nats';
      push(`| ${n} | ${label(system)} | ${cell(caller, 1)} | ${cell(responder, 1)} | ${viaRedis ? cell(redis, 1) : '—'} | ${viaRedis ? cell(publishes, 2) : '—'} |`);
    }
  }
  push('');
  if (results.cpuSpeed !== undefined) {
    push('## Each repetition, and how fast the cores were', '');
    push(
      'Each repetition of the throughput window: requests/s, then the responder process\'s CPU µs per request, then the CPU ms one fixed unit of JSON work took on each core during that window (`bench/src/cpu-speed.ts`: a probe pinned to each core times a unit every half second; the median; lower is faster). ' +
        'On a shared virtual machine the cores do not keep one speed, and a process saturating a core (the N = 4 responders) slows with it: compare repetitions against the core speeds, not only against each other.',
      '',
    );
    push(`| N | system | ${Array.from({ length: config.reps }, (_, rep) => `repetition ${rep + 1}`).join(' | ')} |`, `|---:|---|${'---:|'.repeat(config.reps)}`);
    const shown = (['lib', 'floornest', 'coalesced'] as SystemName[]).filter((system) => results.systems.includes(system));
    for (const n of config.ns) {
      for (const system of shown) {
        const entry = results.main[n]?.[system];
        const speeds = results.cpuSpeed[n]?.[system];
        if (entry === undefined || speeds === undefined) continue;
        const cells = entry.load.map((r, rep) => `${int(r.rps)} (${r.responderCpuUsPerRequest?.toFixed(1) ?? 'n/a'} µs) [${speeds[rep] === undefined ? '?' : formatSpeeds(speeds[rep]!)}]`);
        push(`| ${n} | ${label(system)} | ${cells.join(' | ')} |`);
      }
    }
    push('');
  }
  push('## PUBLISHes by kind', '');
  push(
    `Every message published in a system's namespace during its throughput windows (${config.concurrency} in flight, all repetitions added up), counted in the caller process: each PUBLISH its connection sends (requests, who, ping) and each message its subscriber receives (replies, pongs, hellos, byes); with one caller that is every message of the namespace. ` +
      'Per 1,000 requests (request envelopes seen); a batch counts once as a PUBLISH, under the kind of its first envelope, and each envelope under its own kind. Nest Transport.REDIS and NATS are not in a namespace: —.',
    '',
  );
  push(`| N | system | ${PUBLISH_KINDS.filter((kind) => kind !== 'other').join(' | ')} | replies per reply PUBLISH | requests per request PUBLISH | membership share |`);
  push(`|---:|---|${PUBLISH_KINDS.filter((kind) => kind !== 'other').map(() => '---:|').join('')}---:|---:|---:|`);
  for (const n of config.ns) {
    for (const system of systemsAt(n)) {
      const counts = kindsOf(results.main[n]![system]!.load);
      if (counts === undefined || counts.request.envelopes === 0) continue;
      const per = (value: number): string => ((1000 * value) / counts.request.envelopes).toFixed(value === 0 ? 0 : 2);
      const each = (envelopes: number, messages: number): string => (messages === 0 ? 'n/a' : (envelopes / messages).toFixed(2));
      push(
        `| ${n} | ${label(system)} | ${PUBLISH_KINDS.filter((kind) => kind !== 'other').map((kind) => per(counts[kind].messages)).join(' | ')} | ${each(counts.reply.envelopes, counts.reply.messages)} | ${each(counts.request.envelopes, counts.request.messages)} | ${membershipShare(counts)} |`,
      );
    }
  }
  push('');
  push('## Ratios of this library to each baseline', '');
  push('Median of per-repetition ratios. Throughput: library / baseline (higher is better). Latency: library p50 / baseline p50 at 1 in flight (lower is better).', '');
  const baselines = results.systems.filter((system) => system !== 'lib');
  push(`| N | ${baselines.map((system) => `throughput vs ${label(system)}`).join(' | ')} | ${baselines.map((system) => `p50 vs ${label(system)}`).join(' | ')} |`);
  push(`|---:|${baselines.map(() => '---:|').join('')}${baselines.map(() => '---:|').join('')}`);
  for (const n of config.ns) {
    const main = results.main[n]!;
    if (!main.lib) continue;
    const cells = (pick: (system: SystemName) => number[]): string[] =>
      baselines.map((system) => (main[system] ? ratio(ratioMedian(pick('lib'), pick(system))) : '—'));
    push(`| ${n} | ${cells((system) => main[system]!.load.map((r) => r.rps)).join(' | ')} | ${cells((system) => main[system]!.latency.map((r) => r.p50)).join(' | ')} |`);
  }
  push('');

  push('## Targets (baseline goals, and the stricter stretch goals where they differ)', '');
  push('| goal | target | measured | |', '|---|---|---|---|');
  for (const target of targets) push(`| ${target.level} | ${target.name} | ${target.measured} | ${target.met ? '**met**' : '**MISSED**'} |`);
  push('');
  // What the hand-written coalesced floor itself reaches against the same baselines, in the same
  // repetitions: a target the floor misses is out of reach for any transport on this machine.
  const ceiling = config.ns
    .filter((n) => results.main[n]?.coalesced)
    .map((n) => {
      const main = results.main[n]!;
      const floor = main.coalesced!.load.map((r) => r.rps);
      const against = (system: SystemName): string | undefined => (main[system] ? `${ratio(ratioMedian(floor, main[system]!.load.map((r) => r.rps)))} ${label(system)}` : undefined);
      return `N=${n}: ${[against('nats'), against('nest')].filter(Boolean).join(', ')}`;
    });
  if (ceiling.length > 0) push(`For reference, the coalesced floor's own throughput @${config.concurrency} (median per-repetition ratio) — ${ceiling.join('; ')}.`, '');

  push(`## Latency under load (N = ${config.loadLevelN})`, '');
  push(`p50 / p99 in ms, and throughput, at each number of requests in flight (${config.levelMs} ms windows after ${config.levelWarmupMs} ms warm-up; median of ${config.reps} repetitions).`, '');
  push(`| system | ${config.loadLevels.map((c) => `@${c} p50 / p99`).join(' | ')} | ${config.loadLevels.map((c) => `@${c} req/s`).join(' | ')} |`);
  push(`|---|${config.loadLevels.map(() => '---:|').join('')}${config.loadLevels.map(() => '---:|').join('')}`);
  for (const system of ['lib', 'base', 'naive', 'coalesced'] as SystemName[]) {
    const row = results.levels[system];
    if (!row) continue;
    push(
      `| ${label(system)} | ${config.loadLevels.map((c) => `${ms(median(row[c]!.map((r) => r.p50)))} / ${ms(median(row[c]!.map((r) => r.p99)))}`).join(' | ')} | ${config.loadLevels.map((c) => int(median(row[c]!.map((r) => r.rps)))).join(' | ')} |`,
    );
  }
  push('');

  push('## Memory', '');
  const memory = results.memory.lib;
  if (memory) {
    push(`Library caller process, N = 1, ${config.concurrency} in flight; heap and RSS after a forced GC, after ${int(config.memoryWarmup)} warm-up requests and then every ${int(config.memoryTotal / 4)} requests (${memory.errors} errors).`, '');
    push('| requests after warm-up | heap used MiB | RSS MiB |', '|---:|---:|---:|');
    for (const sample of memory.samples) push(`| ${int(sample.requests)} | ${mib(sample.heapUsed)} | ${mib(sample.rss)} |`);
    push('');
  }
  push(`Memory per request in flight: ${int(config.inflightCount)} requests held open at once (responders answer after ${config.inflightHoldMs} ms), caller heap after a forced GC minus the heap before; median of 3 runs. Includes the harness's own per-request closure (a few dozen bytes).`, '');
  push('| system | bytes per request in flight | runs | all answered |', '|---|---:|---|---|');
  for (const system of results.systems) {
    const runs = results.inflight[system];
    if (!runs) continue;
    push(`| ${label(system)} | ${int(median(runs.map((r) => r.bytesPerRequest)))} | ${runs.map((r) => int(r.bytesPerRequest)).join(', ')} | ${runs.every((r) => r.answered === config.inflightCount) ? 'yes' : runs.map((r) => `${r.answered}/${config.inflightCount}`).join(', ')} |`);
  }
  push('');

  push('## Scale', '');
  push(`**${int(config.burstCount)} gathers in flight at once** (N = ${config.burstN}; issued in one synchronous loop; the library uses \`gather\` and counts a request complete only with \`completedBy: 'all'\` and ${config.burstN} replies; median of 3 runs):`, '');
  push('| system | complete | lost | wall ms (all done) | p50 ms | p99 ms | max ms |', '|---|---:|---:|---:|---:|---:|---:|');
  for (const system of ['lib', 'base', 'naive', 'coalesced'] as SystemName[]) {
    const runs = results.burst[system];
    if (!runs) continue;
    push(
      `| ${label(system)} | ${runs.map((r) => r.complete).join(', ')} | ${runs.map((r) => r.lost).join(', ')} | ${int(median(runs.map((r) => r.wallMs)))} | ${ms(median(runs.map((r) => r.p50)))} | ${ms(median(runs.map((r) => r.p99)))} | ${ms(median(runs.map((r) => r.max)))} |`,
    );
  }
  push('');
  if (results.scale) {
    const scale = results.scale;
    push(
      `**${scale.responders} responding instances on one Redis** (library only: ${scale.processes} responder processes x ${scale.responders / scale.processes} \`RedisBufferTransport\`s, each with its own instanceId; every request must get ${scale.responders} replies; 3 runs):`,
      '',
    );
    push('| p50 ms @1 | p99 ms @1 | req/s @64 | p50 ms @64 | p99 ms @64 | incomplete requests | 1,000 gathers at once: complete / lost, wall ms |', '|---:|---:|---:|---:|---:|---:|---|');
    push(
      `| ${ms(median(scale.latency.map((r) => r.p50)))} | ${ms(median(scale.latency.map((r) => r.p99)))} | ${int(median(scale.load.map((r) => r.rps)))} | ${ms(median(scale.load.map((r) => r.p50)))} | ${ms(median(scale.load.map((r) => r.p99)))} | ${[...scale.latency, ...scale.load].reduce((sum, r) => sum + r.errors, 0)} | ${scale.burst.map((r) => `${r.complete} / ${r.lost}, ${int(r.wallMs)}`).join('; ')} |`,
      '',
    );
  }

  if (results.profile) {
    const { caller, responder, load } = results.profile;
    push('## Profile (this run)', '');
    push(`\`node --cpu-prof\` on the library's caller and on its responder process (N = ${config.profileN}, ${config.concurrency} in flight, ${config.profileMs} ms; ${int(load.rps)} req/s under the profiler). Self time, idle excluded.`, '');
    for (const [name, summary] of [['Caller', caller], ['Responder', responder]] as const) {
      push(`**${name}** (${int(summary.totalMs)} ms busy): ${summary.areas.map((entry) => `${entry.area} ${entry.pct}%`).join(', ')}`, '');
      push('| self % | self ms | frame |', '|---:|---:|---|');
      for (const frame of summary.top.slice(0, 12)) push(`| ${frame.selfPct} | ${frame.selfMs} | \`${frame.frame}\` |`);
      push('');
    }
  }

  const notes = join(benchDir, 'NOTES.md');
  if (existsSync(notes)) push(readFileSync(notes, 'utf8').trim(), '');

  // The durable section comes from its own run (npm run bench:durable): keep it.
  const previous = existsSync(join(outDir, 'RESULTS.md')) ? readFileSync(join(outDir, 'RESULTS.md'), 'utf8') : '';
  const durable = previous.match(/<!-- durable:start -->[\s\S]*<!-- durable:end -->/)?.[0];
  if (durable !== undefined) push(durable, '');
  writeFileSync(join(outDir, 'RESULTS.md'), `${lines.join('\n')}\n`);
  const ns = config.ns;
  const seriesOf = (pick: (entry: NonNullable<Results['main'][number][SystemName]>) => number): Series[] =>
    results.systems.map((system) => ({
      system,
      points: ns.filter((n) => results.main[n]?.[system]).map((n) => [n, pick(results.main[n]![system]!)] as [number, number]),
    }));
  writeFileSync(
    join(outDir, 'latency.svg'),
    chart('p50 latency, 1 request in flight', 'ms', ns, seriesOf((entry) => median(entry.latency.map((r) => r.p50))), false, label),
  );
  writeFileSync(
    join(outDir, 'throughput.svg'),
    chart(`Throughput, ${config.concurrency} requests in flight`, 'requests/s', ns, seriesOf((entry) => median(entry.load.map((r) => r.rps))), true, label),
  );
  return targets.map((target) => `${target.met ? 'met   ' : 'MISSED'} ${target.level} ${target.name}: ${target.measured}`).join('\n');
}
