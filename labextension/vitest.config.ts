import { defineConfig } from 'vitest/config';

// The unit tests cover the pure modules (presence logic, run view); they need no DOM.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node'
  }
});
