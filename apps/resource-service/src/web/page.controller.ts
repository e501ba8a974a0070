import { Controller, Get, Header } from '@nestjs/common';
import { readFileSync } from 'node:fs';

/** The page lives beside the compiled code (`public/` next to `dist/`), and is read once. */
const PAGE_URL = new URL('../../public/index.html', import.meta.url);

/** Serves the self-contained demo page: no external scripts, styles or fonts. */
@Controller()
export class PageController {
  private readonly page = readFileSync(PAGE_URL, 'utf8');

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  index(): string {
    return this.page;
  }
}
