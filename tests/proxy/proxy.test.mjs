// The admin panel's proxy lines of docs/admin-panel.md, read from that file as written,
// in front of the release binary: in an Express panel with a session login (panel.cjs)
// at each place the doc allows, and in Debian's nginx (auth_request to the panel's
// session check). Through each: without a session the list, the download of an archive
// (it holds the sync agent's API key), the creation of a backup, the page and its API
// calls get 401 and not one byte reaches the daemon; a logged-in session gets them all.
// The same again with API_TOKEN set and the header added by the proxy (doc, "Token").
//
// Run: `make test-proxy`, or in tests/proxy: npm ci && node --test
// Needs Node 18.8+, the npm packages of package-lock.json, target/release/neopro-backup
// (NEOPRO_BIN), and nginx with auth_request (NGINX, default /usr/sbin/nginx; Debian:
// apt-get install nginx-light). Without nginx its tests are skipped, and fail when CI=true.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { makePanel } = require('./panel.cjs');

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const BIN = path.resolve(repo, process.env.NEOPRO_BIN || 'target/release/neopro-backup');
const NGINX = process.env.NGINX || '/usr/sbin/nginx';
const CI = process.env.CI === 'true';
const PASSWORD = 'mot-de-passe-du-panel';
const TOKEN = crypto.randomBytes(18).toString('hex');
const DEADLINE_MS = 20000;

// ---------------------------------------------------------------- the doc's blocks

const DOC = fs.readFileSync(path.join(repo, 'docs', 'admin-panel.md'), 'utf8');

/** The text of the `## heading…` section of the doc. */
function section(heading) {
  const start = DOC.indexOf(`\n## ${heading}`);
  assert.ok(start >= 0, `docs/admin-panel.md has no "## ${heading}" section`);
  const rest = DOC.slice(start + 1);
  const end = rest.indexOf('\n## ', 1);
  return end < 0 ? rest : rest.slice(0, end);
}

/** The first fenced block of `lang` in `text`. */
function block(text, lang) {
  const m = new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```').exec(text);
  assert.ok(m, `no \`\`\`${lang} block`);
  return m[1];
}

/** Replaces every `from` (which must be there, `count` times) by `to`. */
function subst(text, from, to, count) {
  const n = text.split(from).length - 1;
  assert.equal(n, count, `${JSON.stringify(from)} is in the doc's block ${n} times, expected ${count}`);
  return text.split(from).join(to);
}

const EXPRESS_LINES = block(section('Express'), 'js');
const NGINX_LINES = block(section('nginx in front'), 'nginx');

// ---------------------------------------------------------------- processes and ports

const children = [];
const servers = [];
let root;
// Even if the run is cut short, no daemon or nginx of ours outlives it.
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

function waitFor(what, check) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = async () => {
      let v;
      try {
        v = await check();
      } catch (e) {
        return reject(e);
      }
      if (v) return resolve(v);
      if (Date.now() - started > DEADLINE_MS) return reject(new Error(`no ${what} within ${DEADLINE_MS} ms`));
      setTimeout(tick, 25);
    };
    tick();
  });
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      servers.push(server);
      resolve(server.address().port);
    });
  });
}

/** A port that was free a moment ago (the caller retries if it is taken meanwhile). */
async function freePort() {
  const s = net.createServer();
  const port = await listen(s);
  servers.pop();
  await new Promise((r) => s.close(r));
  return port;
}

/** A Pi-like tree and a daemon on 127.0.0.1:0; resolves with its port. */
async function startDaemon(name, env = {}) {
  const dir = path.join(root, name);
  const neopro = path.join(dir, 'neopro');
  for (const d of ['webapp', 'sync-agent', 'videos']) fs.mkdirSync(path.join(neopro, d), { recursive: true });
  fs.writeFileSync(path.join(neopro, 'webapp', 'configuration.json'), '{"club":"Club Test"}\n');
  fs.writeFileSync(path.join(neopro, 'sync-agent', '.env'), 'API_KEY=cle-secrete-du-club\n', { mode: 0o600 });
  fs.writeFileSync(path.join(dir, 'site.conf'), 'SITE_NAME="Club Test"\n');
  fs.writeFileSync(path.join(dir, 'backup.conf'), '');
  const backups = path.join(dir, 'backups');
  const child = spawn(BIN, ['--config', path.join(dir, 'backup.conf'), 'serve'], {
    env: {
      PATH: process.env.PATH,
      NEOPRO_DIR: neopro,
      BACKUP_DIR: backups,
      SITE_CONF: path.join(dir, 'site.conf'),
      LISTEN: '127.0.0.1:0',
      TZ: 'Europe/Paris',
      NEOPRO_CATCHUP_DELAY: '3600',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c) => (stderr += c));
  const port = await waitFor(`"serving on" from ${name}`, () => {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}:\n${stderr}`);
    const m = /serving on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
    return m && Number(m[1]);
  });
  return { port, backups, token: env.API_TOKEN };
}

/**
 * A TCP relay in front of the daemon that counts the bytes sent to it: the fronts are
 * given the relay's address, so that a test can tell that nothing reached the daemon.
 */
async function relay(daemonPort) {
  const r = { bytes: 0 };
  const server = net.createServer((c) => {
    const up = net.connect(daemonPort, '127.0.0.1');
    c.on('data', (d) => (r.bytes += d.length));
    c.pipe(up);
    up.pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  r.port = await listen(server);
  return r;
}

/** Whether nginx is there with auth_request; the reason when not. */
function nginxMissing() {
  if (!fs.existsSync(NGINX)) return `no ${NGINX} (Debian: apt-get install nginx-light)`;
  const v = spawnSync(NGINX, ['-V'], { encoding: 'utf8' });
  if (v.status !== 0) return `${NGINX} -V failed: ${v.stderr}`;
  if (!v.stderr.includes('--with-http_auth_request_module')) return `${NGINX} has no auth_request module`;
  return null;
}

/**
 * Debian's nginx in the foreground with a config of ours: the doc's locations in a
 * server whose `location /` is the panel. Retries on another port if the free port was
 * taken meanwhile; ready when it answers its own random marker.
 */
async function startNginx(name, locations) {
  const dir = path.join(root, name);
  for (const d of ['logs', 'tmp']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  const marker = crypto.randomBytes(8).toString('hex');
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const t = (x) => path.join(dir, 'tmp', x);
    const conf = `daemon off;
master_process off;
worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'logs', 'error.log')} info;
events { worker_connections 64; }
http {
    access_log ${path.join(dir, 'logs', 'access.log')};
    client_body_temp_path ${t('body')};
    proxy_temp_path ${t('proxy')};
    fastcgi_temp_path ${t('fastcgi')};
    uwsgi_temp_path ${t('uwsgi')};
    scgi_temp_path ${t('scgi')};
    server {
        listen 127.0.0.1:${port};
        location = /__ready { return 200 "${marker}"; }
        # The panel itself.
        location / {
            proxy_pass http://127.0.0.1:${locations.panelPort};
            proxy_set_header Host $http_host;
        }
        # ---- docs/admin-panel.md ----
${locations.text}
        # ---- end ----
    }
}
`;
    const confPath = path.join(dir, 'nginx.conf');
    fs.writeFileSync(confPath, conf);
    const child = spawn(NGINX, ['-p', dir, '-c', confPath, '-e', path.join(dir, 'logs', 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c) => (stderr += c));
    const up = await waitFor(`nginx on port ${port}`, async () => {
      if (child.exitCode !== null) return 'exited';
      const r = await get(`http://127.0.0.1:${port}`, '/__ready').catch(() => null);
      return r && r.status === 200 && r.text() === marker ? 'up' : null;
    });
    if (up === 'up') return `http://127.0.0.1:${port}`;
    const log = fs.readFileSync(path.join(dir, 'logs', 'error.log'), 'utf8') + stderr;
    if (!/Address already in use/.test(log) || attempt === 5) {
      throw new Error(`nginx did not start:\n${log}\n${conf}`);
    }
  }
}

// ---------------------------------------------------------------- HTTP

/**
 * One request on its own connection, the path sent as given (not normalised); resolves
 * with status, headers and the body.
 */
function request(base, method, p, { headers = {}, body } = {}) {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname,
        port,
        path: p,
        method,
        headers: { ...headers, ...(body ? { 'content-type': 'application/json' } : {}) },
        agent: false,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          resolve({
            status: res.statusCode,
            headers: res.headers,
            body: buf,
            text: () => buf.toString('utf8'),
            json: () => JSON.parse(buf.toString('utf8')),
          });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(DEADLINE_MS * 3, () => req.destroy(new Error(`${method} ${p}: timeout`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const get = (base, p, headers) => request(base, 'GET', p, { headers });

function archives(dir) {
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => /^backup-\d{8}-\d{6}\.tar\.gz$/.test(f)).sort() : [];
}

/** Makes one archive with a request straight to the daemon (the test is on the Pi). */
async function seedArchive(daemon) {
  const headers = daemon.token ? { authorization: `Bearer ${daemon.token}` } : {};
  const r = await request(`http://127.0.0.1:${daemon.port}`, 'POST', '/api/backups/create', { headers });
  assert.equal(r.status, 200, r.text());
  assert.equal(archives(daemon.backups).length, 1);
  return archives(daemon.backups)[0];
}

// ---------------------------------------------------------------- the checks

/**
 * Everything the issue asks of one front (`base`: the panel's address, Express or
 * nginx) to `daemon` through `counter` (the relay): 401 without a session and not one
 * byte to the daemon; 200 with one.
 */
async function checkFront(base, daemon, counter, { pageRedirects }) {
  const name = archives(daemon.backups)[0];
  assert.ok(name, 'no archive to download');
  const made = archives(daemon.backups);
  const sent = counter.bytes;
  const origin = { origin: base };

  // No session (and a wrong password): the panel's 401, for every path to the daemon.
  const bad = await request(base, 'POST', '/api/auth/login', { body: { password: 'faux' } });
  assert.equal(bad.status, 401);
  for (const [method, p, body] of [
    ['GET', '/api/backups'],
    ['GET', `/api/backups/download/${name}`],
    ['POST', '/api/backups/create'],
    ['POST', '/api/backups/auto-toggle', { enable: false }],
    ['GET', '/api/backups/auto-status'],
    ['DELETE', `/api/backups/${name}`],
    ['GET', '/backups/'],
    ['GET', '/backups/api/backups'],
    ['GET', `/backups/api/backups/download/${name}`],
    ['POST', '/backups/api/backups/create'],
    ['GET', '/backups/metrics'],
  ]) {
    const r = await request(base, method, p, { headers: origin, body });
    assert.equal(r.status, 401, `${method} ${p} without a session: ${r.status} ${r.text().slice(0, 200)}`);
    assert.ok(!r.body.includes(Buffer.from(name)), `${method} ${p} shows an archive name`);
    assert.notEqual(r.body[0], 0x1f, `${method} ${p} sent gzip`);
  }
  // Other spellings of the paths: refused by the login, or not found by the panel.
  for (const p of ['/API/Backups', '/Backups/api/backups', '/api/backupsX', '/api//backups', '/api/backups/../backups']) {
    const r = await get(base, p);
    assert.ok(r.status === 401 || r.status === 404, `${p} without a session: ${r.status} ${r.text().slice(0, 200)}`);
  }
  const r301 = await get(base, '/backups');
  assert.ok(r301.status === 401 || r301.status === 301, `/backups: ${r301.status}`);
  assert.equal(counter.bytes, sent, 'a request without a session reached the daemon');
  assert.deepEqual(archives(daemon.backups), made, 'a backup was made without a session');

  // Log in (through the front, as the browser does).
  const login = await request(base, 'POST', '/api/auth/login', { body: { password: PASSWORD } });
  assert.equal(login.status, 200, login.text());
  const cookie = String(login.headers['set-cookie'] || '').split(';')[0];
  assert.match(cookie, /^neopro\.sid=/);
  const s = { cookie };
  const so = { cookie, origin: base };

  const list = await get(base, '/api/backups', s);
  assert.equal(list.status, 200, list.text());
  assert.ok(list.json().backups.some((b) => b.name === name), list.text());
  const dl = await get(base, `/api/backups/download/${name}`, s);
  assert.equal(dl.status, 200);
  assert.ok(dl.body.equals(fs.readFileSync(path.join(daemon.backups, name))), 'download differs from the archive');
  const created = await request(base, 'POST', '/api/backups/create', { headers: so });
  assert.equal(created.status, 200, created.text());
  const newName = created.json().archive;
  assert.ok(newName && !made.includes(newName) && archives(daemon.backups).includes(newName), created.text());
  // Host is passed through: the browser's Origin is the daemon's own; another is not.
  const foreign = await request(base, 'POST', '/api/backups/create', {
    headers: { cookie, origin: 'http://evil.example' },
  });
  assert.equal(foreign.status, 403, foreign.text());
  // A JSON body goes through (express.json() may have read it first).
  for (const enable of [false, true]) {
    const t = await request(base, 'POST', '/api/backups/auto-toggle', { headers: so, body: { enable } });
    assert.equal(t.status, 200, t.text());
    assert.equal(t.json().enabled, enable);
    const st = await get(base, '/api/backups/auto-status', s);
    assert.equal(st.status, 200);
    assert.equal(st.json().enabled, enable, st.text());
  }
  // The page and its relative API calls under /backups/.
  const page = await get(base, '/backups/', s);
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  const bare = await get(base, '/backups', s);
  assert.equal(bare.status, pageRedirects ? 301 : 200);
  const inner = await get(base, '/backups/api/backups', s);
  assert.equal(inner.status, 200);
  assert.equal(inner.json().backups.length, archives(daemon.backups).length);
  const innerDl = await get(base, `/backups/api/backups/download/${name}`, s);
  assert.ok(innerDl.status === 200 && innerDl.body.equals(dl.body));

  // Logged out: 401 again, nothing more reaches the daemon.
  const out = await request(base, 'POST', '/api/auth/logout', { headers: s });
  assert.equal(out.status, 200);
  const sentAfter = counter.bytes;
  for (const p of ['/api/backups', `/api/backups/download/${name}`, '/backups/api/backups']) {
    assert.equal((await get(base, p, s)).status, 401, `${p} after logout`);
  }
  assert.equal(counter.bytes, sentAfter, 'a request after logout reached the daemon');
}

// ---------------------------------------------------------------- setup

let plain; // the daemon on loopback without a token
let tokened; // the daemon with API_TOKEN
let plainRelay;
let tokenRelay;

before(async () => {
  assert.ok(fs.existsSync(BIN), `no ${BIN}: run \`cargo build --release\` (make build)`);
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'neopro-backup-proxy-'));
  [plain, tokened] = await Promise.all([
    startDaemon('daemon'),
    startDaemon('daemon-token', { API_TOKEN: TOKEN }),
  ]);
  await Promise.all([seedArchive(plain), seedArchive(tokened)]);
  plainRelay = await relay(plain.port);
  tokenRelay = await relay(tokened.port);
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(
    children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)),
  );
  for (const s of servers) s.close();
  if (root && !process.env.KEEP_TMP) fs.rmSync(root, { recursive: true, force: true });
});

function expressLines(daemonPort, token) {
  let js = subst(EXPRESS_LINES, "'http://127.0.0.1:8081'", `'http://127.0.0.1:${daemonPort}'`, 1);
  if (token) {
    // docs/admin-panel.md, "Token": the header in the options of both calls.
    js = subst(js, 'proxyTimeout: 600000,', `proxyTimeout: 600000, headers: { Authorization: 'Bearer ${token}' },`, 2);
  }
  return js;
}

async function startPanel(opts) {
  const server = http.createServer(makePanel({ password: PASSWORD, ...opts }));
  return { server, port: await listen(server) };
}

for (const placement of ['before-json', 'before-login', 'after-login']) {
  test(`Express, the doc's lines ${placement}: 401 without a session, 200 with one`, async () => {
    const { port } = await startPanel({ docLines: expressLines(plainRelay.port), placement });
    await checkFront(`http://127.0.0.1:${port}`, plain, plainRelay, { pageRedirects: false });
  });
}

test("Express with API_TOKEN, the header added by the doc's lines", async () => {
  const { port } = await startPanel({ docLines: expressLines(tokenRelay.port, TOKEN), placement: 'before-login' });
  await checkFront(`http://127.0.0.1:${port}`, tokened, tokenRelay, { pageRedirects: false });
  // The token is needed indeed: straight to the daemon without it, 401.
  assert.equal((await get(`http://127.0.0.1:${tokened.port}`, '/api/backups')).status, 401);
});

function nginxLines(daemonPort, panelPort, token) {
  let conf = subst(NGINX_LINES, '127.0.0.1:8081', `127.0.0.1:${daemonPort}`, 2);
  conf = subst(conf, '127.0.0.1:3000', `127.0.0.1:${panelPort}`, 1);
  if (token) {
    conf = subst(
      conf,
      'proxy_set_header Host $http_host;',
      `proxy_set_header Host $http_host; proxy_set_header Authorization "Bearer ${token}";`,
      2,
    );
  }
  return conf;
}

const noNginx = nginxMissing();
const nginxSkip = noNginx && !CI ? `${noNginx}; CI=true makes this a failure` : false;

test("nginx, the doc's locations: auth_request to the panel's session check", { skip: nginxSkip }, async () => {
  assert.equal(noNginx, null, noNginx);
  const panel = await startPanel({});
  const base = await startNginx('nginx', { panelPort: panel.port, text: nginxLines(plainRelay.port, panel.port) });
  await checkFront(base, plain, plainRelay, { pageRedirects: true });
  // The panel down: nginx cannot ask it, answers 500 and proxies nothing.
  await new Promise((r) => {
    panel.server.close(r);
    panel.server.closeAllConnections();
  });
  const sent = plainRelay.bytes;
  for (const p of ['/api/backups', '/backups/api/backups']) {
    assert.equal((await get(base, p)).status, 500, `${p} with the panel down`);
  }
  assert.equal(plainRelay.bytes, sent, 'a request reached the daemon while the panel was down');
});

test("nginx with API_TOKEN, the header added in the doc's two locations", { skip: nginxSkip }, async () => {
  assert.equal(noNginx, null, noNginx);
  const { port: panelPort } = await startPanel({});
  const base = await startNginx('nginx-token', { panelPort, text: nginxLines(tokenRelay.port, panelPort, TOKEN) });
  await checkFront(base, tokened, tokenRelay, { pageRedirects: true });
});
