#!/usr/bin/env node
// Copies this repository (tracked and untracked-but-not-ignored files) to <dir> with the host
// packages of .ci/variants/<name>.json in place of the workspace's own (root devDependencies and
// the example app's dependencies), then installs it from .ci/variants/<name>.lock.json.
//
//   node .ci/variant.mjs <name> <dir>            copy, install (npm ci) and build
//   node .ci/variant.mjs <name> <dir> --relock   same with npm install, then save the new lock file
//
// The end-to-end suite then runs in <dir> against those packages, with real Node module resolution.
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const [name, target, flag] = process.argv.slice(2);
if (!name || !target) {
  console.error('usage: node .ci/variant.mjs <name> <dir> [--relock]');
  process.exit(2);
}
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = resolve(target);
const variant = JSON.parse(readFileSync(join(root, '.ci', 'variants', `${name}.json`), 'utf8'));
const lockFile = join(root, '.ci', 'variants', `${name}.lock.json`);
const run = (command, args, cwd = dir) => execFileSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });

const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: root, encoding: 'utf8' })
  .split('\0')
  .filter((file) => file !== '' && !file.startsWith('bench/') && existsSync(join(root, file)));
mkdirSync(dir, { recursive: true });
for (const file of files) cpSync(join(root, file), join(dir, file), { recursive: true });

function pin(manifestPath, field) {
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  for (const [pkg, version] of Object.entries(variant.dependencies)) {
    if (manifest[field]?.[pkg] !== undefined) manifest[field][pkg] = version;
  }
  writeFileSync(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
}
pin(join(dir, 'package.json'), 'devDependencies');
pin(join(dir, 'apps', 'resource-service', 'package.json'), 'dependencies');

if (flag === '--relock') {
  rmSync(join(dir, 'package-lock.json'), { force: true });
  run('npm', ['install', '--no-audit', '--no-fund']);
  copyFileSync(join(dir, 'package-lock.json'), lockFile);
} else {
  copyFileSync(lockFile, join(dir, 'package-lock.json'));
  try {
    run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline']);
  } catch (error) {
    // The usual cause: a root devDependency or the library's package.json changed since the lock.
    console.error(`npm ci failed for variant ${name}. If package.json files changed, regenerate its lock file:\n  node .ci/variant.mjs ${name} <dir> --relock   (then commit .ci/variants/${name}.lock.json)`);
    throw error;
  }
}
run('npm', ['run', 'build']);
