// The admin panel's own calls (seed-backup-system.md, "Via l'Admin Panel") made with
// Node 20's built-in fetch against the real binary, and the JSON shapes of docs/format.md (API)
// checked field by field. Run: `make test-node`, or
//   NEOPRO_BACKUP_BIN=target/release/neopro-backup node --test tests/node/
// No npm packages: node:test, node:assert and node:child_process only.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(
  repo,
  process.env.NEOPRO_BACKUP_BIN ||
    (fs.existsSync(path.join(repo, 'target/release/neopro-backup'))
      ? 'target/release/neopro-backup'
      : 'target/debug/neopro-backup'),
);

const NAME_RE = /^backup-\d{8}-\d{6}\.tar\.gz$/;
const SIZE_RE = /^\d+(\.\d{2})? (B|KB|MB|GB|TB)$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/;
const CREATED_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const AGE_RE = /^\d+ jours?$/;
const NEXT_RUN_RE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (CET|CEST)$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$/;
const JSON_CT = 'application/json; charset=utf-8';

/** HH:MM in Paris (the daemon's TZ) about twelve hours from now, never in the 02:00 hour
 *  that a DST night skips: the daily run never falls inside a test run. */
const FAR = (() => {
  const fmt = (ms) =>
    new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Paris', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
      .format(new Date(ms));
  const t = fmt(Date.now() + 12 * 3600 * 1000);
  return t.startsWith('02:') ? fmt(Date.now() + 14 * 3600 * 1000) : t;
})();

let root;
let backups;
let daemon;
let base;
let stderr = '';

/** A Pi-like tree: NEOPRO_DIR with the config files and a few videos, site.conf. */
function makeTree() {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'neopro-backup-node-'));
  const neopro = path.join(root, 'neopro');
  fs.mkdirSync(path.join(neopro, 'webapp'), { recursive: true });
  fs.mkdirSync(path.join(neopro, 'sync-agent'), { recursive: true });
  fs.mkdirSync(path.join(neopro, 'videos', 'Match'), { recursive: true });
  fs.writeFileSync(path.join(neopro, 'webapp', 'configuration.json'), '{"club":"Stade équipe"}\n');
  fs.writeFileSync(path.join(neopro, 'sync-agent', '.env'), 'SYNC_TOKEN=s3cr3t\n', { mode: 0o600 });
  fs.writeFileSync(path.join(neopro, 'videos', 'promo.mp4'), Buffer.alloc(3000, 7));
  fs.writeFileSync(path.join(neopro, 'videos', 'Match', 'final.MKV'), Buffer.alloc(1500, 9));
  fs.mkdirSync(path.join(root, 'etc'));
  fs.writeFileSync(path.join(root, 'etc', 'site.conf'), 'SITE_NAME="Club Test"\n');
  fs.writeFileSync(path.join(root, 'etc', 'backup.conf'), '');
  backups = path.join(root, 'backups');
  return neopro;
}

/** Starts `serve` on 127.0.0.1:0 and resolves with its base URL (from its log). */
function startDaemon(neopro) {
  return new Promise((resolve, reject) => {
    daemon = spawn(BIN, ['--config', path.join(root, 'etc', 'backup.conf'), 'serve'], {
      env: {
        NEOPRO_DIR: neopro,
        BACKUP_DIR: backups,
        SITE_CONF: path.join(root, 'etc', 'site.conf'),
        LISTEN: '127.0.0.1:0',
        TZ: 'Europe/Paris',
        NEOPRO_CATCHUP_DELAY: '3600',
        BACKUP_TIME: FAR,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const timer = setTimeout(() => reject(new Error(`no "serving on" within 20 s:\n${stderr}`)), 20000);
    daemon.stderr.setEncoding('utf8');
    daemon.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /serving on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (m && !base) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    daemon.on('exit', (code) => {
      if (!base) {
        clearTimeout(timer);
        reject(new Error(`the daemon exited (${code}) before serving:\n${stderr}`));
      }
    });
    daemon.on('error', reject);
  });
}

before(async () => {
  assert.ok(fs.existsSync(BIN), `build the binary first (${BIN}): make build`);
  base = await startDaemon(makeTree());
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((r) => daemon.on('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  }
  if (root && !process.env.NEOPRO_TEST_KEEP) fs.rmSync(root, { recursive: true, force: true });
});

/** The exact set of keys, in the contract's order. */
function assertKeys(obj, keys, what) {
  assert.equal(typeof obj, 'object', what);
  assert.notEqual(obj, null, what);
  assert.deepEqual(Object.keys(obj), keys, `${what}: keys`);
}

function assertJson(response, what) {
  assert.equal(response.headers.get('content-type'), JSON_CT, `${what}: Content-Type`);
}

function checkEntry(b) {
  assertKeys(b, ['name', 'size', 'sizeBytes', 'date', 'created', 'age'], 'a backup entry');
  assert.match(b.name, NAME_RE);
  assert.match(b.size, SIZE_RE);
  assert.ok(Number.isInteger(b.sizeBytes) && b.sizeBytes > 0, 'sizeBytes');
  assert.equal(b.sizeBytes, fs.statSync(path.join(backups, b.name)).size, 'sizeBytes is the file size');
  assert.match(b.date, DATE_RE);
  // The date is the local time in the name.
  const n = b.name;
  assert.equal(
    b.date,
    `${n.slice(7, 11)}-${n.slice(11, 13)}-${n.slice(13, 15)} ${n.slice(16, 18)}:${n.slice(18, 20)}:${n.slice(20, 22)}`,
  );
  assert.match(b.created, CREATED_RE);
  assert.ok(!Number.isNaN(new Date(b.created).getTime()), 'created parses as a Date');
  assert.match(b.age, AGE_RE);
}

function checkStatus(s) {
  // last-backup-status.json (docs/format.md, The status): these keys with these types; later issues
  // may add members (offsite), so extra keys are allowed here.
  const types = {
    timestamp: 'string',
    date: 'string',
    success: 'boolean',
    archive: 'string',
    size: 'string',
    size_bytes: 'number',
    backups_count: 'number',
    retention_days: 'number',
    duration_ms: 'number',
  };
  for (const [k, t] of Object.entries(types)) {
    assert.equal(typeof s[k], t, `status.${k} is a ${t}: ${JSON.stringify(s)}`);
  }
  assert.match(s.timestamp, ISO_RE);
  assert.match(s.date, /^\d{4}-\d{2}-\d{2}$/);
  assert.ok(Array.isArray(s.warnings), 'status.warnings is an array');
  assert.equal(s.error, null);
  // The error's code and its French words (docs/format.md, Error codes): null too.
  assert.equal(s.error_code, null);
  assert.equal(s.error_words, null);
  assert.equal(s.success, true);
  assert.match(s.archive, NAME_RE);
}

let created = [];

test('GET /api/backups before any backup: an empty list and a null status', async () => {
  const response = await fetch(base + '/api/backups');
  assert.equal(response.status, 200);
  assertJson(response, 'list');
  const data = await response.json();
  assertKeys(data, ['backups', 'status', 'total', 'totalSize'], 'list');
  assert.deepEqual(data.backups, []);
  assert.equal(data.status, null);
  assert.equal(data.total, 0);
  assert.equal(data.totalSize, 0);
});

test("fetch('/api/backups/create', { method: 'POST' }) makes a backup", async () => {
  for (let i = 0; i < 2; i++) {
    const response = await fetch(base + '/api/backups/create', { method: 'POST' });
    assert.equal(response.status, 200);
    assertJson(response, 'create');
    const data = await response.json();
    assertKeys(data, ['success', 'message', 'output', 'archive'], 'create');
    assert.equal(data.success, true);
    assert.equal(data.message, 'Backup créé avec succès');
    assert.equal(typeof data.output, 'string');
    assert.ok(data.output.length > 0, 'output carries the log of the run');
    assert.match(data.archive, NAME_RE);
    assert.ok(fs.existsSync(path.join(backups, data.archive)));
    created.push(data.archive);
  }
  assert.notEqual(created[0], created[1]);
});

test("fetch('/api/backups') lists them newest first, with the last status", async () => {
  const response = await fetch(base + '/api/backups');
  const data = await response.json();
  console.log(data.backups); // as the admin panel does
  console.log(data.status);
  assertKeys(data, ['backups', 'status', 'total', 'totalSize'], 'list');
  assert.equal(data.total, 2);
  assert.equal(data.backups.length, 2);
  data.backups.forEach(checkEntry);
  assert.deepEqual(
    data.backups.map((b) => b.name),
    [...created].sort().reverse(),
    'newest first',
  );
  assert.equal(
    data.totalSize,
    data.backups.reduce((s, b) => s + b.sizeBytes, 0),
  );
  checkStatus(data.status);
  assert.equal(data.status.archive, created[1]);
  assert.equal(data.status.backups_count, 2);
  assert.equal(data.backups[0].age, '0 jours');
});

test('the download URL gives the exact file as an attachment', async () => {
  const name = created[0];
  const response = await fetch(base + '/api/backups/download/' + name);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'application/gzip');
  assert.equal(response.headers.get('content-disposition'), `attachment; filename="${name}"`);
  const onDisk = fs.readFileSync(path.join(backups, name));
  assert.equal(response.headers.get('content-length'), String(onDisk.length));
  const bytes = Buffer.from(await response.arrayBuffer());
  assert.ok(bytes.equals(onDisk), 'downloaded bytes equal the file on disk');
  assert.equal(bytes[0], 0x1f);
  assert.equal(bytes[1], 0x8b);
});

test('download errors: 400 for a bad name, 404 for a missing one', async () => {
  let response = await fetch(base + '/api/backups/download/..%2F..%2Fetc%2Fpasswd');
  assert.equal(response.status, 400);
  assertJson(response, '400');
  assert.deepEqual(await response.json(), { error: 'Nom de fichier invalide' });
  response = await fetch(base + '/api/backups/download/backup-19990101-000000.tar.gz');
  assert.equal(response.status, 404);
  assert.deepEqual(await response.json(), { error: 'Backup non trouvé' });
});

test('POST /api/backups/verify/:filename', async () => {
  const response = await fetch(base + '/api/backups/verify/' + created[0], { method: 'POST' });
  assert.equal(response.status, 200);
  assertJson(response, 'verify');
  const data = await response.json();
  assertKeys(data, ['ok', 'files', 'error'], 'verify');
  assert.equal(data.ok, true);
  assert.equal(data.error, null);
  assert.ok(data.files.length >= 5);
  for (const f of data.files) {
    assertKeys(f, ['name', 'sha256', 'ok'], 'verify file');
    assert.equal(typeof f.name, 'string');
    assert.match(f.sha256, /^[0-9a-f]{64}$/);
    assert.equal(f.ok, true);
  }
  const names = data.files.map((f) => f.name);
  for (const n of ['configuration.json', 'sync-agent.env', 'site.conf', 'videos-inventory.txt', 'system-info.txt']) {
    assert.ok(names.includes(n), `${n} in ${names}`);
  }
});

test('auto-toggle with { enable: false } and { enable: true }, and auto-status', async () => {
  // Désactiver
  let response = await fetch(base + '/api/backups/auto-toggle', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ enable: false }),
  });
  assert.equal(response.status, 200);
  assertJson(response, 'auto-toggle');
  assert.deepEqual(await response.json(), {
    success: true,
    message: 'Backup automatique désactivé',
    enabled: false,
  });
  let status = await fetch(base + '/api/backups/auto-status').then((r) => r.json());
  assertKeys(status, ['enabled', 'active', 'nextRun', 'logs'], 'auto-status');
  assert.equal(status.enabled, false);
  assert.equal(status.active, false);

  // Activer
  response = await fetch(base + '/api/backups/auto-toggle', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ enable: true }),
  });
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), {
    success: true,
    message: 'Backup automatique activé',
    enabled: true,
  });

  // Statut
  status = await fetch(base + '/api/backups/auto-status').then((r) => r.json());
  console.log(status.enabled); // true/false
  console.log(status.nextRun); // "Wed 2024-12-18 03:00:00 CET"
  assertKeys(status, ['enabled', 'active', 'nextRun', 'logs'], 'auto-status');
  assert.equal(status.enabled, true);
  assert.equal(status.active, true);
  assert.equal(typeof status.nextRun, 'string');
  assert.match(status.nextRun, NEXT_RUN_RE);
  // A fresh success exists: the next run is the daily one at BACKUP_TIME (no catch-up).
  assert.ok(status.nextRun.includes(` ${FAR}:00 `), `${status.nextRun} is not at ${FAR}`);
  assert.equal(typeof status.logs, 'string');
  const lines = status.logs.split('\n');
  assert.ok(lines.length >= 1 && lines.length <= 20, `at most 20 log lines, got ${lines.length}`);
  assert.match(status.logs, /automatic backup on/);
});

test('auto-toggle refuses anything but a JSON boolean', async () => {
  for (const body of [JSON.stringify({ enable: 'false' }), JSON.stringify({ enable: 0 }), JSON.stringify({ enable: null }), '{}']) {
    const response = await fetch(base + '/api/backups/auto-toggle', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
    });
    assert.equal(response.status, 400, body);
    assert.deepEqual(await response.json(), { error: 'Paramètre "enable" requis' });
  }
  const status = await fetch(base + '/api/backups/auto-status').then((r) => r.json());
  assert.equal(status.enabled, true);
});

test("DELETE '/api/backups/:filename' removes the backup", async () => {
  const name = created[0];
  const response = await fetch(base + '/api/backups/' + name, {
    method: 'DELETE',
  });
  assert.equal(response.status, 200);
  assertJson(response, 'delete');
  assert.deepEqual(await response.json(), { success: true, message: 'Backup supprimé' });
  assert.ok(!fs.existsSync(path.join(backups, name)));
  const again = await fetch(base + '/api/backups/' + name, { method: 'DELETE' });
  assert.equal(again.status, 404);
  assert.deepEqual(await again.json(), { error: 'Backup non trouvé' });
  const data = await fetch(base + '/api/backups').then((r) => r.json());
  assert.deepEqual(data.backups.map((b) => b.name), [created[1]]);
  assert.equal(data.total, 1);
});

test('unknown paths are 404 JSON, wrong methods 405 JSON', async () => {
  let response = await fetch(base + '/api/nope');
  assert.equal(response.status, 404);
  assertJson(response, '404');
  assert.equal(typeof (await response.json()).error, 'string');
  response = await fetch(base + '/api/backups/create');
  assert.equal(response.status, 405);
  assertJson(response, '405');
  assert.equal(typeof (await response.json()).error, 'string');
});

test('/healthz, /metrics and the page', async () => {
  let response = await fetch(base + '/healthz');
  assert.equal(response.status, 200);
  assert.equal(await response.text(), 'ok');
  response = await fetch(base + '/metrics');
  assert.equal(response.status, 200);
  assert.match(await response.text(), /^neopro_backup_archives 1$/m);
  response = await fetch(base + '/');
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /^text\/html/);
});
