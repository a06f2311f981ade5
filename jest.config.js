/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  globalSetup: '<rootDir>/test/global_setup.js',
  testMatch: ['**/*.test.ts'],
  // Whole-model tests on the cpu/wasm backends are compute-bound; give them room.
  testTimeout: 180000,
  // Two cores: run files two at a time, never more.
  maxWorkers: 2,
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
};
