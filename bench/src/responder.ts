// A responder process: hosts the responding instances of one system (argv: system, comma-separated instance ids).
// Forked by the orchestrator with IPC; exits when told to, or when the orchestrator goes away.
import type { Endpoints, SystemName } from './common.js';
import { startResponders } from './systems/index.js';
import type { ResponderGroup } from './systems/types.js';

const system = process.argv[2] as SystemName;
const ids = process.argv[3]!.split(',');
const endpoints = JSON.parse(process.env.BENCH_ENDPOINTS!) as Endpoints;
let group: ResponderGroup | undefined;
let exiting = false;

async function exit(code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  const force = setTimeout(() => process.exit(code), 3000);
  force.unref();
  try {
    await group?.close();
  } catch {
    // Exiting anyway.
  }
  // process.exit (not a signal) so that --cpu-prof writes its profile.
  process.exit(code);
}

process.on('message', (message: { op?: string }) => {
  if (message?.op === 'exit') void exit(0);
});
process.on('disconnect', () => void exit(0));
process.on('SIGTERM', () => void exit(0));
process.on('SIGINT', () => void exit(0));

startResponders(system, endpoints, ids).then(
  (started) => {
    group = started;
    process.send?.({ ready: true });
  },
  (error: unknown) => {
    process.stderr.write(`responder ${system} failed: ${String((error as Error)?.stack ?? error)}\n`);
    process.exit(1);
  },
);
