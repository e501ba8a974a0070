// What the tarball holds, as `npm pack --dry-run` lists it and the README's release notes say: the
// two builds with their declarations, the README, the licence and the manifest; no source maps
// (they would point at sources the tarball does not ship), no sources, no tests.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const library = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'libs', 'redis-buffer');

describe('the packed library', () => {
  it('holds the ES module and CommonJS builds with their declarations, README, LICENSE and package.json, and nothing else', async () => {
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: library, maxBuffer: 8 * 1024 * 1024 });
    const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
    const paths = pack!.files.map((file) => file.path).sort();
    expect(paths).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/index.d.ts', 'dist/cjs/package.json']));
    const unexpected = paths.filter((path) => !['LICENSE', 'README.md', 'package.json', 'dist/cjs/package.json'].includes(path) && !/^dist\/(cjs\/)?[\w/.-]+\.(js|d\.ts)$/.test(path));
    expect(unexpected).toEqual([]);
    // Every module of each build has its declarations.
    const modules = paths.filter((path) => path.endsWith('.js'));
    expect(modules.filter((path) => !paths.includes(path.replace(/\.js$/, '.d.ts')))).toEqual([]);
    expect(modules.filter((path) => path.startsWith('dist/cjs/')).length).toBe(modules.filter((path) => !path.startsWith('dist/cjs/')).length);
    // No module points at a source map.
    expect(modules.filter((path) => readFileSync(join(library, path), 'utf8').includes('sourceMappingURL'))).toEqual([]);
    const manifest = JSON.parse(readFileSync(join(library, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      repository: { type: 'git', url: expect.stringMatching(/^git\+https:\/\/github\.com\/.+\.git$/), directory: 'libs/redis-buffer' },
      homepage: expect.stringMatching(/^https:\/\//),
      bugs: { url: expect.stringMatching(/\/issues$/) },
      license: 'MIT',
    });
  }, 60_000);
});
