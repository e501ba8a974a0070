import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The built package as Node resolves it by name, from CommonJS and from an ES module, in fresh
// processes (Jest's own module loader would not show what Node does). The packed tarball in fresh
// apps is test/compat's job; this is the fast check that runs with npm test.

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const library = join(root, 'libs', 'redis-buffer');
const manifest = JSON.parse(readFileSync(join(library, 'package.json'), 'utf8'));

interface Loaded {
  file: string;
  exports: string[];
  transportIsRegistered: boolean;
  optionsToken: string;
}

const describeCopy = `({ exports: Object.keys(lib).sort(), transportIsRegistered: lib.BUFFER_TRANSPORT === Symbol.for('nestjs-redis-buffer'), optionsToken: lib.BUFFER_MODULE_OPTIONS })`;

function loadWith(format: 'require' | 'import'): Loaded {
  const script =
    format === 'require'
      ? `const lib = require('nestjs-redis-buffer'); console.log(JSON.stringify({ file: require.resolve('nestjs-redis-buffer'), ...${describeCopy} }));`
      : `import * as lib from 'nestjs-redis-buffer'; import { fileURLToPath } from 'node:url'; console.log(JSON.stringify({ file: fileURLToPath(import.meta.resolve('nestjs-redis-buffer')), ...${describeCopy} }));`;
  const args = format === 'require' ? ['--input-type=commonjs', '-e', script] : ['--input-type=module', '-e', script];
  const stdout = execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Loaded;
}

describe('the package from CommonJS and from ES modules', () => {
  it('resolves require() to the CommonJS build and import to the ES module build', () => {
    expect(loadWith('require').file).toBe(join(library, 'dist', 'cjs', 'index.js'));
    expect(loadWith('import').file).toBe(join(library, 'dist', 'index.js'));
  });

  it('exports the same names from both builds, with one transport id (a registered symbol) and one options token (a string)', () => {
    const fromRequire = loadWith('require');
    const fromImport = loadWith('import');
    expect(fromRequire.exports).toEqual(fromImport.exports);
    expect(fromImport.exports).toEqual(expect.arrayContaining(['BufferModule', 'BufferClient', 'RedisBufferTransport', 'BufferedPattern', 'BUFFER_TRANSPORT']));
    expect(fromRequire.transportIsRegistered).toBe(true);
    expect(fromImport.transportIsRegistered).toBe(true);
    expect(fromRequire.optionsToken).toBe('BUFFER_MODULE_OPTIONS');
    expect(fromImport.optionsToken).toBe('BUFFER_MODULE_OPTIONS');
  });

  it('has every file its exports map names, and marks dist/cjs as CommonJS', () => {
    const targets: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string') targets.push(value);
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    collect(manifest.exports);
    expect(targets).toEqual(expect.arrayContaining(['./dist/index.d.ts', './dist/cjs/index.d.ts', './dist/index.js', './dist/cjs/index.js']));
    for (const target of [...targets, manifest.main, manifest.types]) expect(existsSync(join(library, target))).toBe(true);
    expect(JSON.parse(readFileSync(join(library, 'dist', 'cjs', 'package.json'), 'utf8'))).toEqual({ type: 'commonjs' });
  });

  it('declares a peer for every package its builds import, and none it does not (no @nestjs/core)', () => {
    const imported = new Set<string>();
    const scan = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) scan(path);
        else if (entry.name.endsWith('.js')) {
          for (const [, specifier] of readFileSync(path, 'utf8').matchAll(/(?:from |require\(|import\()["']([^"'.][^"']*)["']/g)) {
            if (!specifier!.startsWith('node:')) imported.add(specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!);
          }
        }
      }
    };
    scan(join(library, 'dist'));
    // reflect-metadata is never imported: Nest's decorators need it loaded by the app, hence the peer.
    // @opentelemetry/api is loaded with import() when the app has it: an optional peer.
    expect([...imported].sort()).toEqual(['@nestjs/common', '@nestjs/microservices', '@opentelemetry/api', 'ioredis', 'rxjs']);
    expect(Object.keys(manifest.peerDependencies).sort()).toEqual([...imported, 'reflect-metadata'].sort());
    expect(manifest.peerDependenciesMeta).toEqual({ '@opentelemetry/api': { optional: true } });
  });

  it('admits Node 20.19+, 22.12+ and later, not Node 21 or 22.0-22.11 (no require() of ES modules there)', () => {
    expect(manifest.engines.node).toBe('>=20.19 <21 || >=22.12');
  });
});
