// Models from the Hugging Face Hub, kept in the Origin Private File System. The engine decides
// what to fetch (hub_listing / hub_plan: the same plan the CLI follows); this module only GETs
// those URLs — nothing about the user is ever sent — writes each file into OPFS as it arrives
// (a broken download resumes with a byte range), and keeps a manifest per snapshot so that a
// reload reopens the model from OPFS with no request at all.
//
// OPFS layout (the Hub cache's, minus symlinks): hub/models--owner--name/snapshots/<commit>/<file>
// plus .kto.json there: { id, revision, sha, label, files: [{name, size}], complete, added }.

import { fileSize as mb } from './util.js';

export const DEFAULT_HUB = 'https://huggingface.co';
const MANIFEST = '.kto.json';

/** A file name inside a snapshot folder (OPFS names cannot hold '/'). */
const flat = (name) => name.replaceAll('/', '%2F');

async function hubRoot() {
  return (await navigator.storage.getDirectory()).getDirectoryHandle('hub', { create: true });
}

async function snapshotDir(folder, sha, create) {
  const repo = await (await hubRoot()).getDirectoryHandle(folder, { create });
  return (await repo.getDirectoryHandle('snapshots', { create })).getDirectoryHandle(sha, { create });
}

async function readJson(dir, name) {
  try {
    return JSON.parse(await (await (await dir.getFileHandle(name)).getFile()).text());
  } catch {
    return null;
  }
}

async function writeFile(dir, name, data) {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  await w.write(data);
  await w.close();
}


/** Space the browser grants this page: { usage, quota } in bytes (null where unknown). */
export async function storageEstimate() {
  const e = (await navigator.storage?.estimate?.()) || {};
  return { usage: e.usage ?? null, quota: e.quota ?? null };
}

function quotaMessage(what, need, est) {
  const have = est.quota != null && est.usage != null ? ` (${mb(est.usage)} of the ${mb(est.quota)} it allows is in use)` : '';
  return `The browser refused space for ${what}${need ? ` (${mb(need)})` : ''}${have}. Delete models you no longer need `
    + 'from the library, or free disk space, then open it again: what was downloaded is kept and the rest resumes.';
}

function isQuotaError(e) {
  return e?.name === 'QuotaExceededError' || /quota/i.test(e?.message || '');
}

/**
 * Download (or finish downloading) `spec` from `endpoint` into OPFS and return what the engine
 * needs to open it: { name, files: [{name, bytes}], entry } — or { choose: { id, revision, files } }
 * when the repo holds several GGUF files and `spec` names none (ask, then call again with `:file`). `progress({file, done, total, overall, overallTotal, note})`.
 */
export async function fetchModel(engine, spec, endpoint, progress = () => {}) {
  const where = await engine.call('hubListing', { spec, endpoint });
  let res;
  try {
    res = await fetch(where.url, { credentials: 'omit' });
  } catch (e) {
    throw new Error(`the Hub at ${endpoint} cannot be reached (${e.message}); models already downloaded are in the library below`);
  }
  if (res.status === 401 || res.status === 403) {
    throw new Error(`the Hub refuses ${where.id} (${res.status}): it is gated or private. Accept its licence on the Hub, download it there and open the files here`);
  }
  if (res.status === 404) throw new Error(`the Hub has no model ${where.id} at revision ${where.revision}`);
  if (!res.ok) throw new Error(`the Hub answered HTTP ${res.status} for ${where.id}`);
  const plan = await engine.call('hubPlan', { spec, endpoint, listing: await res.text() });
  // Several GGUF files (one per quantization) and none named: the caller asks which.
  if (plan.kind === 'choose') return { choose: plan };
  const dir = await snapshotDir(plan.folder, plan.sha, true);
  const prior = await readJson(dir, MANIFEST);
  const entry = {
    id: plan.id, revision: plan.revision, sha: plan.sha, folder: plan.folder, spec,
    label: prior?.label || plan.id + (plan.revision !== 'main' ? `@${plan.revision}` : ''),
    files: plan.files.map((f) => ({ name: f.name, size: f.size })), complete: false, added: prior?.added || Date.now(),
  };
  const sizes = plan.files.map((f) => f.size || 0);
  const overallTotal = sizes.reduce((a, b) => a + b, 0);
  let before = 0;
  const have = [];
  for (const f of plan.files) have.push(await sizeOf(dir, flat(f.name)));
  const missing = plan.files.reduce((s, f, i) => s + Math.max(0, (f.size || 0) - have[i]), 0);
  const est = await storageEstimate();
  if (est.quota != null && est.usage != null && missing > est.quota - est.usage) {
    if (!prior) await deleteKept(entry).catch(() => {});
    throw new Error(`${plan.id} needs ${mb(missing)} more, but this browser allows KTO Studio only `
      + `${mb(Math.max(0, est.quota - est.usage))} more (${mb(est.usage)} of ${mb(est.quota)} in use). Delete models you no `
      + 'longer need from the library below, or free disk space, then open it again.');
  }
  await writeFile(dir, MANIFEST, JSON.stringify(entry));
  for (const [i, f] of plan.files.entries()) {
    await downloadFile(dir, f, (done, total, note) => progress({ file: f.name, done, total, overall: before + done, overallTotal, note }));
    before += sizes[i] || (await sizeOf(dir, flat(f.name)));
  }
  entry.complete = true;
  await writeFile(dir, MANIFEST, JSON.stringify(entry));
  return { name: entry.id, files: await readFiles(dir, entry), entry };
}

async function sizeOf(dir, name) {
  try {
    return (await (await dir.getFileHandle(name)).getFile()).size;
  } catch {
    return 0;
  }
}

/** GET one file into `dir`, resuming from what is there (three tries). */
async function downloadFile(dir, f, progress) {
  const handle = await dir.getFileHandle(flat(f.name), { create: true });
  let note = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    let have = (await handle.getFile()).size;
    if (f.size != null && have === f.size) {
      progress(have, f.size, note);
      return;
    }
    if (f.size != null && have > f.size) have = 0;
    const res = await fetch(f.url, { credentials: 'omit', headers: have > 0 ? { Range: `bytes=${have}-` } : {} });
    if (res.status === 200) have = 0;
    else if (res.status !== 206) throw new Error(`the Hub answered HTTP ${res.status} for ${f.name}`);
    const total = f.size ?? (Number(res.headers.get('content-length')) + have || null);
    const out = await handle.createWritable({ keepExistingData: true });
    let broke = null;
    try {
      await out.truncate(have);
      await out.seek(have);
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        await out.write(value);
        have += value.byteLength;
        progress(have, total, note);
      }
    } catch (e) {
      if (isQuotaError(e)) {
        await out.abort().catch(() => {});
        throw new Error(quotaMessage(f.name, total, await storageEstimate()));
      }
      broke = e;
    }
    // Closing commits what arrived, so a retry (or a later visit) continues from there.
    await out.close();
    if (!broke && (total == null || have === total)) {
      progress(have, total ?? have, note);
      return;
    }
    note = `the connection broke at ${mb(have)}; resuming`;
  }
  throw new Error(`downloading ${f.name} failed three times; open it again to resume`);
}

async function readFiles(dir, entry) {
  const out = [];
  for (const f of entry.files) {
    const file = await (await dir.getFileHandle(flat(f.name))).getFile();
    out.push({ name: f.name.split('/').pop(), bytes: await file.arrayBuffer() });
  }
  return out;
}

/** Every model kept in OPFS: [{ ...manifest, size }], newest first. */
export async function listModels() {
  const out = [];
  if (!navigator.storage?.getDirectory) return out;
  for await (const [folder, repo] of (await hubRoot()).entries()) {
    if (repo.kind !== 'directory') continue;
    const snaps = await repo.getDirectoryHandle('snapshots', { create: true });
    for await (const [sha, dir] of snaps.entries()) {
      if (dir.kind !== 'directory') continue;
      const m = await readJson(dir, MANIFEST);
      if (!m) continue;
      let size = 0;
      for (const f of m.files) size += await sizeOf(dir, flat(f.name));
      out.push({ ...m, folder, sha, size });
    }
  }
  return out.sort((a, b) => b.added - a.added);
}

/** A kept model's files, read from OPFS (no request). */
export async function openKept(entry) {
  const dir = await snapshotDir(entry.folder, entry.sha, false);
  const m = await readJson(dir, MANIFEST);
  if (!m?.complete) throw new Error(`${entry.label} is not completely downloaded; open it from the Hub again to resume`);
  return { name: m.id, files: await readFiles(dir, m), entry: m };
}

export async function renameKept(entry, label) {
  const dir = await snapshotDir(entry.folder, entry.sha, false);
  const m = await readJson(dir, MANIFEST);
  await writeFile(dir, MANIFEST, JSON.stringify({ ...m, label }));
}

export async function deleteKept(entry) {
  const repo = await (await hubRoot()).getDirectoryHandle(entry.folder);
  const snaps = await repo.getDirectoryHandle('snapshots');
  await snaps.removeEntry(entry.sha, { recursive: true });
  let left = 0;
  for await (const _ of snaps.keys()) left += 1;
  if (!left) await (await hubRoot()).removeEntry(entry.folder, { recursive: true });
}
