// Reads the .cpuprofile files written by `node --cpu-prof` and names where the time goes.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileFrame {
  readonly frame: string;
  readonly selfMs: number;
  readonly selfPct: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  /** Share of non-idle time per area: this library, ioredis, rxjs, Nest, Node internals, GC, … */
  readonly areas: Array<{ area: string; pct: number }>;
  readonly top: ProfileFrame[];
}

function area(url: string, functionName: string): string {
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8/native (program)';
  if (url.includes('/libs/redis-buffer/')) return 'nestjs-redis-buffer';
  if (url.includes('/bench/')) return 'bench harness';
  if (url.includes('/ioredis/') || url.includes('/redis-parser/') || url.includes('/denque/')) return 'ioredis';
  if (url.includes('/rxjs/')) return 'rxjs';
  if (url.includes('/@nestjs/')) return '@nestjs';
  if (url.startsWith('node:')) return 'Node internals';
  if (url === '') return `native/builtin`;
  return 'other';
}

export function summarizeProfile(dir: string, repoRoot: string): ProfileSummary {
  const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  for (let index = 0; index < profile.samples.length; index++) {
    const id = profile.samples[index]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
  }
  const frames = new Map<string, number>();
  const areas = new Map<string, number>();
  let busy = 0;
  for (const [id, micros] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    busy += micros;
    const where = url.replace(`file://${repoRoot}/`, '').replace(/^.*node_modules\//, '');
    const name = `${functionName || '(anonymous)'}${where ? ` ${where}:${lineNumber + 1}` : ''}`;
    frames.set(name, (frames.get(name) ?? 0) + micros);
    const key = area(url, functionName);
    areas.set(key, (areas.get(key) ?? 0) + micros);
  }
  const top = [...frames.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)
    .map(([frame, micros]) => ({ frame, selfMs: Math.round(micros / 1000), selfPct: Math.round((micros / busy) * 1000) / 10 }));
  return {
    file: join(dir, file).replace(`${repoRoot}/`, ''),
    totalMs: Math.round(busy / 1000),
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([name, micros]) => ({ area: name, pct: Math.round((micros / busy) * 1000) / 10 })),
    top,
  };
}
