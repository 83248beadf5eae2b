// Where the threaded tab's KTO step goes, by function: V8's sampling profiler on the engine's worker and
// on each pool helper (Chrome DevTools protocol) while the page runs the engine's bench, then the
// functions with the most self time. The .cpuprofile files land in test-output/ (open them in DevTools).
// Run `./scripts/build.sh` first: the profiled page is a copy of dist/ whose threaded module keeps its
// function names (the build strips them; this re-binds the threaded build's wasm without stripping).
// Sampling slows the step (~1.15x at 200 us) and a waiting thread's samples grow with it: read shares
// and compare runs of one build with another, not absolute times (those are `bench.mjs`'s).
// Usage: node tests/browser/profile.mjs [steps, default 20] [top, default 25]
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT, ROOT, launch, openApp } from './harness.mjs';

const steps = Number(process.argv[2] || 20);
const top = Number(process.argv[3] || 25);
const cache = process.env.KTO_CACHE || join(process.env.HOME, '.cache/kto-studio');
const wasm = join(cache, 'target-wasm-threads/wasm32-unknown-unknown/release/kto_studio.wasm');
const dist = join(OUT, 'profile-dist');
rmSync(dist, { recursive: true, force: true });
cpSync(join(ROOT, 'dist'), dist, { recursive: true });
rmSync(join(dist, 'pkg-threads'), { recursive: true });
execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', join(dist, 'pkg-threads'), wasm],
  { env: { ...process.env, PATH: `${join(process.env.HOME, '.cargo/bin')}:${process.env.PATH}` } });

const env = await launch({ webgpu: false, isolated: true, root: dist });
try {
  await openApp(env, '?backend=cpu');
  // The workers' own sessions, through the page's (Playwright opens CDP sessions on pages only).
  const cdp = await env.context.newCDPSession(env.page);
  const pending = new Map();
  let id = 0;
  cdp.on('Target.receivedMessageFromTarget', ({ sessionId, message }) => {
    const m = JSON.parse(message);
    pending.get(`${sessionId}:${m.id}`)?.(m);
  });
  const send = (sessionId, method, params = {}) => new Promise((done) => {
    pending.set(`${sessionId}:${++id}`, done);
    cdp.send('Target.sendMessageToTarget', { sessionId, message: JSON.stringify({ id, method, params }) });
  });
  const { targetInfos } = await cdp.send('Target.getTargets');
  const workers = [];
  for (const t of targetInfos.filter((t) => t.type === 'worker')) {
    const { sessionId } = await cdp.send('Target.attachToTarget', { targetId: t.targetId, flatten: false });
    await send(sessionId, 'Profiler.enable');
    await send(sessionId, 'Profiler.setSamplingInterval', { interval: 200 });
    workers.push({ sessionId, name: t.url.split('/').pop() });
  }
  const bench = (n) => env.page.evaluate((o) => window.ktoStudio.app.engine.call('bench', o),
    { steps: n, seqLen: 64, genTokens: 8, loraRank: 0, chat: false });
  await bench(3); // V8 tiers the module up during the first steps: profile optimised code only
  for (const w of workers) await send(w.sessionId, 'Profiler.start');
  const r = await bench(steps);
  console.log(`${steps} steps, median ${r.kto_step_ms.toFixed(1)} ms/step under the profiler (products ${r.products_ms.toFixed(1)} ms)`);
  for (const [i, w] of workers.entries()) {
    const { result } = await send(w.sessionId, 'Profiler.stop');
    const file = join(OUT, `profile-${i}-${w.name.replace('.js', '')}.cpuprofile`);
    writeFileSync(file, JSON.stringify(result.profile));
    console.log(`\n${w.name} (${file})`);
    report(result.profile);
  }
} finally {
  await env.close();
}

/** The functions with the most self time, Rust's crate hashes and symbol hashes left out. */
function report(profile) {
  const name = new Map(profile.nodes.map((n) => [n.id, (n.callFrame.functionName || '(anonymous)')
    .replace(/\[[0-9a-f]+\]/g, '').replace(/::h[0-9a-f]{16}$/, '')]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((node, i) => {
    const dt = profile.timeDeltas[i] || 0;
    total += dt;
    self.set(name.get(node), (self.get(name.get(node)) || 0) + dt);
  });
  for (const [fn, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${(100 * us / total).toFixed(1).padStart(5)}%  ${fn.slice(0, 150)}`);
  }
}
