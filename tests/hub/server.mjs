// A local stand-in for the Hugging Face Hub, for tests: serves committed model folders under the
// Hub's URL layout, logs every request, and can break a download halfway to test resuming.
//
//   GET /api/models/{owner}/{name}[/revision/{rev}]  -> {id, sha, siblings: [{rfilename, size}]}
//   GET /{owner}/{name}/resolve/{rev}/{file}         -> the bytes (ETag = sha256, X-Repo-Commit,
//                                                       byte ranges answered with 206)
//
// Use from node (startHub) or as a process:
//   node tests/hub/server.mjs --repo owner/name=DIR [--repo ...] [--cut FILE] [--port N]
// prints "hub http://127.0.0.1:PORT" and then one JSON line per request.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';

/** A fixed commit per repo (the Hub's are 40 hex digits). */
const commitOf = (id) => createHash('sha1').update(`kto-test:${id}`).digest('hex');

/**
 * repos: {"owner/name": folder}; cut: a file name whose first full download is broken off halfway.
 * Resolves to {url, requests, close()}: requests holds {method, path, range} of every request.
 */
export function startHub({ repos, cut = null, port = 0, onRequest = () => {} }) {
  const requests = [];
  const cutDone = new Set();
  const files = (dir) => readdirSync(dir).filter((f) => f !== 'reference.json' && statSync(join(dir, f)).isFile()).sort();
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://hub');
    const path = decodeURIComponent(url.pathname);
    const entry = { method: req.method, path, range: req.headers.range || null };
    requests.push(entry);
    onRequest(entry);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'ETag, X-Repo-Commit, Content-Length, Content-Range');
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)(?:\/revision\/([^/]+))?$/);
    if (m) {
      const [, id, rev = 'main'] = m;
      const dir = repos[id];
      if (!dir || (rev !== 'main' && rev !== commitOf(id))) {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: 'Repository not found' }));
        return;
      }
      const siblings = files(dir).map((f) => ({ rfilename: f, size: statSync(join(dir, f)).size }));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ id, modelId: id, sha: commitOf(id), siblings }));
      return;
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (m) {
      const [, id, rev, file] = m;
      const dir = repos[id];
      if (!dir || (rev !== 'main' && rev !== commitOf(id)) || !files(dir).includes(file)) {
        res.writeHead(404).end('Entry not found');
        return;
      }
      const bytes = readFileSync(join(dir, file));
      const headers = { ETag: `"${createHash('sha256').update(bytes).digest('hex')}"`, 'X-Repo-Commit': commitOf(id),
        'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
      const range = /^bytes=(\d+)-$/.exec(req.headers.range || '');
      if (range) {
        const start = Number(range[1]);
        if (start >= bytes.length) {
          res.writeHead(416, headers).end();
          return;
        }
        res.writeHead(206, { ...headers, 'Content-Length': bytes.length - start,
          'Content-Range': `bytes ${start}-${bytes.length - 1}/${bytes.length}` });
        res.end(bytes.subarray(start));
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Length': bytes.length });
      if (file === cut && !cutDone.has(file)) {
        // Half the bytes, then the connection drops: the client must resume with a range.
        cutDone.add(file);
        res.write(bytes.subarray(0, bytes.length >> 1), () => setTimeout(() => res.destroy(), 50));
        return;
      }
      res.end(bytes);
      return;
    }
    res.writeHead(404).end('Not found');
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        requests,
        commitOf,
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
      });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const repos = {};
  let cut = null;
  let port = 0;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--repo') {
      const [id, dir] = args[++i].split('=');
      repos[id] = dir;
    } else if (args[i] === '--cut') cut = args[++i];
    else if (args[i] === '--port') port = Number(args[++i]);
  }
  const hub = await startHub({ repos, cut, port, onRequest: (r) => console.log(JSON.stringify(r)) });
  console.log(`hub ${hub.url}`);
}
