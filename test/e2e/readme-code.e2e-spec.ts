// The README's code compiles: every ```ts block of README.md and apps/resource-service/README.md
// is written to a file of its own and type-checked, strict, against the packed library as an app
// installs it (`npm pack`'s tarball unpacked into the check's node_modules: the package's `exports`
// and the declarations the tarball ships, nothing the tarball leaves out); every ```js block
// (the plain Node examples) is an ES module checked the same way (`checkJs`). A block marked
// ```ts fragment is a deliberate excerpt and is skipped; there are few.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCUMENTS = ['README.md', join('apps', 'resource-service', 'README.md')];
const LIBRARY = join(root, 'libs', 'redis-buffer');

interface Block {
  readonly document: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly info: string;
  readonly code: string;
}

/** Every fenced block of a Markdown document, with its info string. */
export function codeBlocks(document: string): Block[] {
  const lines = readFileSync(join(root, document), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S.*)?$/.exec(lines[i]!);
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i]!);
    blocks.push({ document, line: start + 1, info: (open[1] ?? '').trim(), code: body.join('\n') });
  }
  return blocks;
}

describe('README code', () => {
  const blocks = DOCUMENTS.flatMap(codeBlocks);
  const typescript = blocks.filter((block) => block.info === 'ts');
  const javascript = blocks.filter((block) => block.info === 'js');
  const fragments = blocks.filter((block) => block.info === 'ts fragment');

  it('has TypeScript blocks to check, and few fragments', () => {
    expect(typescript.length).toBeGreaterThanOrEqual(8);
    expect(fragments.length).toBeLessThanOrEqual(3);
    // A typo in the info string would skip a block silently.
    expect(blocks.filter((block) => /^(ts|typescript|js|javascript|mjs)\b/.test(block.info) && block.info !== 'ts' && block.info !== 'js' && block.info !== 'ts fragment')).toEqual([]);
    // The plain Node examples ("Without Nest").
    expect(javascript.length).toBeGreaterThanOrEqual(2);
  });

  it('every ts and js block type-checks on its own against the built library, with the imports it shows', async () => {
    // Inside the repository, so Nest and the other peers resolve from its node_modules, while
    // `nestjs-redis-buffer` resolves to the tarball unpacked in the check's own node_modules.
    const dir = mkdtempSync(join(root, 'test', '.readme-'));
    try {
      const run = promisify(execFile);
      // The build is the test run's (npm run build); the tarball is what `npm pack` would publish.
      const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: LIBRARY, maxBuffer: 8 * 1024 * 1024 });
      const [{ filename }] = JSON.parse(stdout) as Array<{ filename: string }>;
      const installed = join(dir, 'node_modules', 'nestjs-redis-buffer');
      mkdirSync(installed, { recursive: true });
      await run('tar', ['-xzf', join(dir, filename), '-C', installed, '--strip-components=1']);
      const files = [...typescript, ...javascript].map((block, index) => {
        const name = `block-${index + 1}.${block.info === 'js' ? 'mjs' : 'ts'}`;
        // Each block is a module of its own: nothing leaks from one block to the next.
        writeFileSync(join(dir, name), `${block.code}\nexport {};\n`);
        return { name, block };
      });
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            lib: ['ES2022', 'DOM'],
            module: 'nodenext',
            moduleResolution: 'nodenext',
            strict: true,
            experimentalDecorators: true,
            allowJs: true,
            checkJs: true,
            emitDecoratorMetadata: true,
            skipLibCheck: true,
            noEmit: true,
            types: ['node'],
          },
          files: files.map(({ name }) => name),
        }),
      );
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
      const printed = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json'), '--listFiles'], { cwd: dir, maxBuffer: 8 * 1024 * 1024 }).then(
        ({ stdout }) => stdout,
        (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
      );
      // --listFiles names every file the check read: the library's declarations come from the tarball.
      const read = printed.split('\n').filter((line) => line.startsWith('/'));
      expect(read).toContain(join(installed, 'dist', 'index.d.ts'));
      expect(read.filter((file) => file.startsWith(`${LIBRARY}/`))).toEqual([]);
      const output = printed.split('\n').filter((line) => line !== '' && !line.startsWith('/')).join('\n');
      // Each error named by its README line: block-N.ts(line,col) -> document:line.
      const located = output.replace(/block-(\d+)\.m?[jt]s\((\d+),(\d+)\)/g, (_, index: string, line: string) => {
        const { block } = files[Number(index) - 1]!;
        return `${relative(root, join(root, block.document))}:${block.line + Number(line)}`;
      });
      expect(located).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
