// IndexedDB persistence: labelled rows (the user's work — never dropped on an engine error),
// saved trained weights, and settings. One small promise wrapper, no library.

import { fileSize } from './util.js';

const DB_NAME = 'kto-studio';
const VERSION = 1;

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

let dbPromise = null;
function db() {
  dbPromise ??= new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, VERSION);
    open.onupgradeneeded = () => {
      const d = open.result;
      if (!d.objectStoreNames.contains('labels')) d.createObjectStore('labels', { keyPath: 'id', autoIncrement: true });
      if (!d.objectStoreNames.contains('weights')) d.createObjectStore('weights', { keyPath: 'name' });
      if (!d.objectStoreNames.contains('settings')) d.createObjectStore('settings');
    };
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  return dbPromise;
}

async function store(name, mode = 'readonly') {
  return (await db()).transaction(name, mode).objectStore(name);
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** A labelled row: { id, prompt, completion, label: bool, source: 'human'|'import', created }. */
export const labels = {
  async all() {
    return req((await store('labels')).getAll());
  },
  async add(row) {
    return req((await store('labels', 'readwrite')).add({ created: Date.now(), source: 'human', ...row }));
  },
  /** Add many rows in one transaction (all or nothing). */
  async addMany(rows) {
    const tx = (await db()).transaction('labels', 'readwrite');
    const s = tx.objectStore('labels');
    for (const row of rows) s.add({ created: Date.now(), source: 'import', ...row });
    return done(tx);
  },
  async put(row) {
    return req((await store('labels', 'readwrite')).put(row));
  },
  async remove(id) {
    return req((await store('labels', 'readwrite')).delete(id));
  },
  async clear() {
    return req((await store('labels', 'readwrite')).clear());
  },
};

/** Trained weights (one file each): { name (key), bytes, saved, model, label }. */
export const weights = {
  async save(name, bytes, meta = {}) {
    try {
      return await req((await store('weights', 'readwrite')).put({ name, bytes, saved: Date.now(), ...meta }));
    } catch (e) {
      if (e?.name === 'QuotaExceededError') {
        throw new Error(`the browser refused space for these weights (${fileSize(bytes.byteLength)}): `
          + 'delete entries from the Model view\'s library, or download the weights instead');
      }
      throw e;
    }
  },
  async get(name) {
    return req((await store('weights')).get(name));
  },
  async list() {
    return req((await store('weights')).getAll());
  },
  /** The most recently saved weights of `model` (or of any model). */
  async latest(model) {
    const all = (await this.list()).filter((w) => !model || w.model === model);
    return all.sort((a, b) => b.saved - a.saved)[0] || null;
  },
  async rename(name, label) {
    const w = await this.get(name);
    if (w) await req((await store('weights', 'readwrite')).put({ ...w, label }));
  },
  async remove(name) {
    return req((await store('weights', 'readwrite')).delete(name));
  },
};

export const settings = {
  async get(key, fallback) {
    const v = await req((await store('settings')).get(key));
    return v === undefined ? fallback : v;
  },
  async set(key, value) {
    return req((await store('settings', 'readwrite')).put(value, key));
  },
};
