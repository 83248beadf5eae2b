// A dependency-free static file server for dist/, bound to 127.0.0.1 only.
// Usage: node scripts/serve.mjs DIR [PORT]   (PORT 0 picks a free one)
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm',
  '.bin': 'application/octet-stream', '.txt': 'text/plain; charset=utf-8', '.png': 'image/png', '.svg': 'image/svg+xml',
};

/** Cross-origin isolation (COOP + COEP): browsers give shared wasm memory, and so the engine's
 *  CPU threads, only to an isolated page. Every file the app loads is its own, so `require-corp`
 *  blocks nothing; the Hub download uses CORS fetches, which it allows. */
const ISOLATION = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/** `isolated: false` serves without COOP/COEP (the page then runs the single-threaded engine). */
export function serve(dir, port = 0, { isolated = true } = {}) {
  const root = resolve(dir);
  const server = createServer(async (req, res) => {
    try {
      // Parsed as a path (a base URL would read `//…` as a host); a bad %-escape is a 400, not a 500.
      let path = decodeURIComponent(new URL(`http://x${req.url.startsWith('/') ? '' : '/'}${req.url}`).pathname);
      if (path.endsWith('/')) path += 'index.html';
      const file = normalize(join(root, path));
      if (file !== root && !file.startsWith(root + sep)) throw Object.assign(new Error('outside root'), { code: 'ENOENT' });
      if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache', ...(isolated ? ISOLATION : {}) });
      res.end(body);
    } catch (e) {
      const [status, text] = e.code === 'ENOENT' ? [404, 'not found']
        : e instanceof URIError || e.code === 'ERR_INVALID_URL' ? [400, 'bad request'] : [500, 'server error'];
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(text);
    }
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(server)));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [dir = 'dist', port = '8080'] = process.argv.slice(2);
  const server = await serve(dir, Number(port));
  console.log(`KTO Studio is ready: open http://127.0.0.1:${server.address().port}/ in Chrome or Edge (WebGPU). Ctrl-C stops it.`);
}
