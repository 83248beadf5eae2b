// A/B of two builds of the app in the threaded tab, steady state: each round opens one page per build
// (alternating), runs four 8-step stories260K benches in it and keeps the best median of the last three
// (the first runs partly on V8's baseline wasm code). Swaps the given folders in as dist/ and leaves the
// last one there. On this noisy machine only alternating rounds compare builds.
// Usage: node tests/browser/ab-bench.mjs /path/dist-a,/path/dist-b [rounds, default 3]
//   P1=1: one pool thread (the worker's poolSize patched to 1 in the copy). GEN=128: tokens the bench
//   generates (and warms generation up with) before its steps, default 4.
import { execFileSync } from 'node:child_process';
import { launch, openApp } from './harness.mjs';

const dirs = process.argv[2].split(',');
const rounds = Number(process.argv[3] || 3);
const best = Object.fromEntries(dirs.map((d) => [d, []]));
const swapIn = (dir) => {
  execFileSync('rm', ['-rf', 'dist']);
  execFileSync('cp', ['-r', dir, 'dist']);
  if (process.env.P1) execFileSync('sed', ['-i', 's/^const poolSize = .*/const poolSize = 1;/', 'dist/js/worker.js']);
};
for (let i = 0; i < rounds; i++) {
  for (const dir of dirs) {
    swapIn(dir);
    const env = await launch({ webgpu: false, isolated: true });
    try {
      await openApp(env, '?backend=cpu');
      const ms = [];
      for (let j = 0; j < 4; j++) {
        const r = await env.page.evaluate((gen) => window.ktoStudio.app.engine.call('bench', { steps: 8, genTokens: gen }), Number(process.env.GEN || 4));
        ms.push(r.kto_step_ms);
      }
      best[dir].push(Math.min(...ms.slice(1)));
      console.log(dir, 'medians', ms.join(' '));
    } finally {
      await env.close();
    }
  }
}
for (const dir of dirs) {
  const xs = best[dir];
  console.log(dir, 'ms / step:', xs.join(', '), `(mean ${(xs.reduce((a, b) => a + b) / xs.length).toFixed(1)})`);
}
