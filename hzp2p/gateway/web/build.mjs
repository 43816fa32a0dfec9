// Bundles the three pages' scripts (src/*.js) and their pinned npm dependencies into dist/
// with esbuild: ES modules, minified, shared code and the lazily loaded QR scanner split
// into chunks. dist/ is not committed; .ci/run and docs/gateway.md run `npm ci` then this.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: ['src/dashboard.js', 'src/citizen.js', 'src/venue.js'],
  outdir: 'dist',
  bundle: true,
  splitting: true,
  format: 'esm',
  minify: true,
  target: ['es2022'],
  platform: 'browser',
  chunkNames: 'chunk-[hash]',
  legalComments: 'none',
  // libsodium's Emscripten loader mentions Node modules it never loads in a browser
  external: ['fs', 'path', 'crypto'],
  logLevel: 'warning',
});
