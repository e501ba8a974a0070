import { createRequire } from 'node:module';
import { join } from 'node:path';

type Library = typeof import('nestjs-redis-buffer');

/** This app's format, as compiled: CommonJS code has `module` and `exports`. */
export const FORMAT: 'cjs' | 'esm' = typeof module !== 'undefined' && typeof exports !== 'undefined' ? 'cjs' : 'esm';

/**
 * The copy of the library this app's own imports do not load: the ES module build from a CommonJS
 * app, the CommonJS build from an ES module app (the dual-package hazard, on purpose).
 */
export async function loadOtherCopy(): Promise<Library> {
  // TypeScript sees the two copies' classes as different types too (private members).
  if (FORMAT === 'cjs') return (await import('nestjs-redis-buffer')) as unknown as Library;
  return createRequire(join(process.cwd(), 'package.json'))('nestjs-redis-buffer') as Library;
}
