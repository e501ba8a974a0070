import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stopChild } from '../support/instances.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';

// The packed library (npm pack) installed from the registry's Nest 11 and Nest 12 into fresh apps
// outside the workspace, CommonJS and ES module, each run as a user runs it: three instances and
// one caller as separate processes. The two formats of one host share that host's node_modules.

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const library = join(root, 'libs', 'redis-buffer');
const template = join(here, 'app');
const execFileAsync = promisify(execFile);

/** Runs a command to completion; a failure's message carries the command's whole output. */
async function exec(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(command, args, { maxBuffer: 16 * 1024 * 1024, timeout: 100_000, killSignal: 'SIGKILL', ...options });
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${(error as Error).message}\n${stdout ?? ''}\n${stderr ?? ''}`);
  }
}

const workspace = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
const nest11 = JSON.parse(readFileSync(join(root, '.ci', 'variants', 'nest11.json'), 'utf8')) as { dependencies: Record<string, string> };
const pick = (from: Record<string, string>, names: string[]): Record<string, string> => Object.fromEntries(names.map((name) => [name, from[name]!]));
const HOST_PACKAGES = ['@nestjs/common', '@nestjs/core', '@nestjs/microservices', '@nestjs/testing', 'ioredis'];
const TOOLS = pick(workspace.devDependencies, ['typescript', 'jest', 'ts-jest', '@types/jest', '@types/node', 'reflect-metadata', 'rxjs']);

interface Host {
  name: string;
  /** The Nest major whose README install line this app runs. */
  major: 11 | 12;
  dependencies: Record<string, string>;
  /** TypeScript `module` for the CommonJS app: Nest 12 is ES module only, which `node16` cannot import from CommonJS. */
  cjsModule: 'node16' | 'nodenext';
}

// ioredis crosses over: the end-to-end cells run Nest 11 with ioredis 5 and Nest 12 with ioredis 6,
// so these apps take the other pairs.
const HOSTS: Host[] = [
  { name: 'nest11', major: 11, dependencies: { ...pick(nest11.dependencies, HOST_PACKAGES), ioredis: workspace.devDependencies.ioredis! }, cjsModule: 'node16' },
  { name: 'nest12', major: 12, dependencies: { ...pick(workspace.devDependencies, HOST_PACKAGES), ioredis: nest11.dependencies.ioredis! }, cjsModule: 'nodenext' },
];

/** The README's install line for a Nest major, as written there (`npm install nestjs-redis-buffer @nestjs/microservices@^N ioredis`). */
function readmeInstallLine(major: number): string[] {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const line = readme.split('\n').find((candidate) => candidate.startsWith('npm install nestjs-redis-buffer ') && candidate.includes(`@nestjs/microservices@^${major} `));
  if (line === undefined) throw new Error(`README.md has no install line for Nest ${major} apps`);
  return line.trim().split(/\s+/);
}

/** The `jest` section of a `nest new` app's package.json. */
const NEST_NEW_JEST = {
  moduleFileExtensions: ['js', 'json', 'ts'],
  rootDir: 'src',
  testRegex: '.*\\.spec\\.ts$',
  transform: { '^.+\\.(t|j)s$': 'ts-jest' },
  collectCoverageFrom: ['**/*.(t|j)s'],
  coverageDirectory: '../coverage',
  testEnvironment: 'node',
};

interface GatherOutput {
  format: string;
  completedBy: string;
  expected: number;
  replies: Array<{ instanceId: string; answer: string }>;
  errors: unknown[];
  sameTransportId: boolean;
  sameBufferClientClass: boolean;
}

describe('the packed library in fresh Nest apps', () => {
  let temp: string;
  let tarball: string;
  let redis: TestRedis;
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    if (!existsSync(join(library, 'dist', 'cjs', 'package.json'))) throw new Error('Build the library first: npm run build');
    temp = mkdtempSync(join(tmpdir(), 'rb-compat-'));
    await exec('npm', ['pack', '--ignore-scripts', '--pack-destination', temp], { cwd: library });
    tarball = join(temp, readdirSync(temp).find((file) => file.endsWith('.tgz'))!);
    redis = await startRedis();
    // Both hosts at once: the time goes to the network and the npm cache, not the CPU.
    await Promise.all(HOSTS.map((host) => install(host)));
  }, 600_000);

  afterAll(async () => {
    await Promise.all([...children].map((child) => stopChild(child, 'SIGKILL')));
    await redis?.stop();
    // COMPAT_KEEP_TEMP=1 keeps the apps for a look after a failure.
    if (temp && process.env.COMPAT_KEEP_TEMP !== '1') rmSync(temp, { recursive: true, force: true });
  }, 60_000);

  async function install(host: Host): Promise<void> {
    const dir = join(temp, host.name);
    mkdirSync(dir);
    // The app before it adds this library: Nest (without @nestjs/microservices) and the tools.
    const { '@nestjs/microservices': _microservices, ioredis, ...app } = host.dependencies;
    const manifest = { name: `compat-${host.name}`, private: true, dependencies: { ...app, ...TOOLS } };
    writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
    const quiet = ['--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'];
    await exec('npm', ['install', ...quiet], { cwd: dir, timeout: 500_000 });
    // Then the README's line for this Nest major, exactly as written (the tarball in place of the
    // package name until it is published). No --legacy-peer-deps: the peer ranges must accept it.
    const [command, ...args] = readmeInstallLine(host.major);
    await exec(command!, [...args.map((arg) => (arg === 'nestjs-redis-buffer' ? tarball : arg)), ...quiet], { cwd: dir, timeout: 500_000 });
    // The ioredis this cell pairs with the host (see HOSTS).
    await exec('npm', ['install', `ioredis@${ioredis}`, ...quiet], { cwd: dir, timeout: 500_000 });
    for (const format of ['cjs', 'esm'] as const) {
      const app = join(dir, format);
      cpSync(template, app, { recursive: true, filter: (source) => format === 'cjs' || !source.endsWith('.spec.ts') });
      const tsconfig = JSON.parse(readFileSync(join(app, 'tsconfig.json'), 'utf8'));
      if (format === 'cjs') tsconfig.compilerOptions.module = tsconfig.compilerOptions.moduleResolution = host.cjsModule;
      writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
      const appManifest = { name: `compat-${host.name}-${format}`, private: true, type: format === 'cjs' ? 'commonjs' : 'module', ...(format === 'cjs' ? { jest: NEST_NEW_JEST } : {}) };
      writeFileSync(join(app, 'package.json'), JSON.stringify(appManifest, null, 2));
    }
  }

  function startInstance(app: string, instanceId: string, otherCopy: boolean): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['dist/main.js', 'serve', instanceId, ...(otherCopy ? ['other-copy'] : [])], {
      cwd: app,
      env: { ...process.env, REDIS_URL: redis.url },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    let output = '';
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${instanceId} did not start within 30 s:\n${output}`)), 30_000);
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes(`ready ${instanceId}`)) {
          clearTimeout(timer);
          resolve(child);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${instanceId} exited (${code ?? signal}) before it was ready:\n${output}`));
      });
    });
  }

  describe.each(HOSTS.flatMap((host) => (['cjs', 'esm'] as const).map((format) => ({ host: host.name, format, dependencies: host.dependencies }))))(
    '$host, $format',
    ({ host, format, dependencies }) => {
      const app = (): string => join(temp, host, format);

      it(`compiles with tsc and scatter-gathers across three instance processes (Nest ${dependencies['@nestjs/core']}, ioredis ${dependencies.ioredis})`, async () => {
        await exec(process.execPath, [join(temp, host, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: app() });
        const instances = await Promise.all(['a', 'b', 'c'].map((id) => startInstance(app(), `${host}-${format}-${id}`, id === 'c')));
        try {
          const { stdout } = await exec(process.execPath, ['dist/main.js', 'gather'], { cwd: app(), env: { ...process.env, REDIS_URL: redis.url } });
          const output = JSON.parse(stdout.trim().split('\n').pop()!) as GatherOutput;

          expect(output.format).toBe(format);
          expect(output.completedBy).toBe('all');
          expect(output.expected).toBe(3);
          expect(output.errors).toEqual([]);
          expect(output.replies.map((reply) => reply.instanceId).sort()).toEqual(['a', 'b', 'c'].map((id) => `${host}-${format}-${id}`));
          expect(output.replies.every((reply) => reply.answer === `hello from ${reply.instanceId}`)).toBe(true);
          // Instance c runs the other build's transport under this build's decorators: the transport
          // id is shared. The BufferClient class is not (see the README on the dual-package hazard).
          expect(output.sameTransportId).toBe(true);
          expect(output.sameBufferClientClass).toBe(false);
        } finally {
          await Promise.all(instances.map((child) => stopChild(child)));
        }
      }, 120_000);

      if (format === 'cjs') {
        // Nest 12 is ES module only: Jest in CommonJS mode can load it only where it supports
        // require(esm), Node 24.9 and later with --experimental-vm-modules. Elsewhere the module it
        // cannot load must be Nest's own, never this library (which it loads as CommonJS).
        const [major, minor] = process.versions.node.split('.').map(Number);
        const jestCanRequireEsm = major! > 24 || (major === 24 && minor! >= 9);
        const expectPass = host === 'nest11' || jestCanRequireEsm;

        it(`${expectPass ? 'passes' : 'fails on Nest, not on this library, in'} its spec under the \`nest new\` Jest config (ts-jest, CommonJS)`, async () => {
          const jest = join(temp, host, 'node_modules', 'jest', 'bin', 'jest.js');
          const env = { ...process.env, REDIS_URL: redis.url, NODE_OPTIONS: host === 'nest12' ? '--experimental-vm-modules' : '' };
          if (expectPass) {
            const { stderr } = await exec(process.execPath, [jest, '--ci'], { cwd: app(), env });
            expect(stderr).toMatch(/Tests:\s+1 passed, 1 total/);
          } else {
            const failure = await exec(process.execPath, [jest, '--ci'], { cwd: app(), env }).then(() => new Error('passed'), (error: Error) => error);
            expect(failure.message).toMatch(/Must use import to load ES Module: \S*node_modules\/@nestjs\//);
            expect(failure.message).not.toMatch(/Must use import to load ES Module: \S*nestjs-redis-buffer/);
          }
        }, 120_000);
      }
    },
  );
});
