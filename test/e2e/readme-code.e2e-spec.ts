// The README's code compiles: every ```ts block of README.md and apps/resource-service/README.md
// is written to a file of its own and type-checked, strict, against the built library as an app
// imports it (the package's `exports` and the declarations the tarball ships). A block marked
// ```ts fragment is a deliberate excerpt and is skipped; there are few.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DOCUMENTS = ['README.md', join('apps', 'resource-service', 'README.md')];

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
  const fragments = blocks.filter((block) => block.info === 'ts fragment');

  it('has TypeScript blocks to check, and few fragments', () => {
    expect(typescript.length).toBeGreaterThanOrEqual(8);
    expect(fragments.length).toBeLessThanOrEqual(3);
    // A typo in the info string would skip a block silently.
    expect(blocks.filter((block) => /^(ts|typescript)\b/.test(block.info) && block.info !== 'ts' && block.info !== 'ts fragment')).toEqual([]);
  });

  it('every ts block type-checks on its own against the built library, with the imports it shows', async () => {
    // Inside the repository, so `nestjs-redis-buffer` and Nest resolve from its node_modules.
    const dir = mkdtempSync(join(root, 'test', '.readme-'));
    try {
      const files = typescript.map((block, index) => {
        const name = `block-${index + 1}.ts`;
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
      const output = await promisify(execFile)(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { cwd: dir, maxBuffer: 8 * 1024 * 1024 }).then(
        () => '',
        (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ''}${error.stderr ?? ''}`,
      );
      // Each error named by its README line: block-N.ts(line,col) -> document:line.
      const located = output.replace(/block-(\d+)\.ts\((\d+),(\d+)\)/g, (_, index: string, line: string) => {
        const { block } = files[Number(index) - 1]!;
        return `${relative(root, join(root, block.document))}:${block.line + Number(line)}`;
      });
      expect(located).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
