// Jest 30 in ESM mode (Nest 12 is ESM only): run with node --experimental-vm-modules (see package.json).
const tsJest = ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.json' }];
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: { '^.+\\.ts$': tsJest },
  testEnvironment: 'node',
  // bench/ can hold another build of the library (npm run bench -- --baseline=...), which would
  // give jest's module map two packages named nestjs-redis-buffer.
  modulePathIgnorePatterns: ['<rootDir>/bench/'],
};

/** @type {import('jest').Config} */
export default {
  // Jest reads testTimeout from the top level only (a project's own is ignored): this bounds every
  // test and hook that sets no timeout of its own, which a loaded machine starting processes needs.
  testTimeout: 60_000,
  projects: [
    { ...common, displayName: 'unit', rootDir: '.', testMatch: ['<rootDir>/libs/*/test/**/*.spec.ts'] },
    { ...common, displayName: 'e2e', rootDir: '.', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'], setupFilesAfterEnv: ['<rootDir>/test/support/quiet-by-default.ts'] },
    // The packed library in fresh Nest 11 and 12 apps (npm install from the registry): npm run test:compat.
    { ...common, displayName: 'compat', rootDir: '.', testMatch: ['<rootDir>/test/compat/**/*.compat-spec.ts'] },
  ],
};
