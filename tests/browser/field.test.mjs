// Field safety on the backups page (`GET /`, src/serve/page.html) in Debian's Chromium,
// driven by playwright-core (the harness of ui.test.mjs): archives of the old
// auto-backup.sh marked as such, and a clock that was wrong (an archive and a success
// dated 2099) never shown as "À jour" but pointed out (docs/format.md, The schedule).
//
//   NEOPRO_BIN  the binary (default: target/release/neopro-backup, built by `make build`)
//   CHROMIUM    the browser (default: /usr/bin/chromium, Debian's package)
// Screenshots go to tests/artifacts/ (ignored by git).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const BIN = path.resolve(process.env.NEOPRO_BIN || path.join(ROOT, "target/release/neopro-backup"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "tests/artifacts");
const TOKEN = "test-token-0123456789-abcdef";
const T = { timeout: 90_000 };

let browser;
const cleanups = [];

before(async () => {
  assert.ok(fs.existsSync(BIN), `no binary at ${BIN}: run \`make build\` (or set NEOPRO_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // playwright-core gives Chromium a fresh, empty --user-data-dir of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
});

after(async () => {
  for (const c of cleanups.reverse()) {
    try { await c(); } catch { /* best effort */ }
  }
  if (browser) await browser.close();
});

// ---------- the Pi-like tree and the daemon ----------

function makeTree() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "neopro-backup-ui-"));
  const w = (rel, data) => {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
  };
  w("neopro/webapp/configuration.json", '{"club": "Stade équipe", "videos": ["promo.mp4"]}\n');
  w("neopro/sync-agent/.env", "SYNC_SERVER=https://sync.example.org\nSYNC_TOKEN=s3cr3t\n");
  w("neopro/videos/promo.mp4", Buffer.alloc(3000, 7));
  w("etc/site.conf", 'SITE_NAME="Club Test"\n');
  w("etc/backup.conf", ""); // so that the host's /etc/neopro/backup.conf never leaks in
  const tree = {
    root,
    backups: path.join(root, "backups"),
    conf: path.join(root, "etc/backup.conf"),
    env: {
      NEOPRO_DIR: path.join(root, "neopro"),
      BACKUP_DIR: path.join(root, "backups"),
      SITE_CONF: path.join(root, "etc/site.conf"),
      TZ: "UTC",
      LANG: "C.UTF-8",
    },
  };
  cleanups.push(() => fs.rmSync(root, { recursive: true, force: true }));
  return tree;
}

/** One backup with the CLI (a second one within the same second waits for the next). */
function runBackup(tree) {
  execFileSync(BIN, ["--config", tree.conf, "run"], { env: tree.env, stdio: "pipe" });
}

function archives(tree) {
  return fs.readdirSync(tree.backups).filter(n => /^backup-\d{8}-\d{6}\.tar\.gz$/.test(n)).sort().reverse();
}

/** Starts `serve` on a free port; resolves with its base URL once it listens. */
function startDaemon(tree, extra = {}) {
  const env = { ...tree.env, LISTEN: "127.0.0.1:0", NEOPRO_CATCHUP_DELAY: "3600", ...extra };
  const proc = spawn(BIN, ["--config", tree.conf, "serve"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const stop = () => new Promise(res => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res();
    proc.once("exit", res);
    proc.kill("SIGTERM");
    setTimeout(() => proc.kill("SIGKILL"), 5000).unref();
  });
  cleanups.push(stop);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("daemon did not start:\n" + log)), 15_000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", d => {
      log += d;
      const m = /serving on (http:\/\/\S+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ url: m[1], proc, stop, log: () => log }); }
    });
    proc.once("exit", code => { clearTimeout(timer); reject(new Error(`daemon exited (${code}):\n${log}`)); });
  });
}

async function apiGet(d, p, token) {
  const r = await fetch(d.url + p, { headers: token ? { Authorization: "Bearer " + token } : {} });
  return { status: r.status, body: await r.json() };
}

// ---------- the page ----------

/** A fresh browser context (empty sessionStorage) on the page; fails the test on any
 *  script error or console error (a CSP violation shows up there). */
async function open(d, opts = {}) {
  const ctx = await browser.newContext({ viewport: opts.viewport || { width: 1280, height: 900 }, deviceScaleFactor: opts.scale || 1, acceptDownloads: true });
  cleanups.push(() => ctx.close());
  const page = await ctx.newPage();
  const problems = [];
  page.on("pageerror", e => problems.push("pageerror: " + e.message));
  page.on("console", m => {
    // HTTP errors the page handles (the 401 that asks for the token, a 501 or 500 it
    // explains) are logged by Chromium as failed resources: not a problem of the page.
    if (m.type() === "error" && !/^Failed to load resource: the server responded/.test(m.text())) problems.push("console: " + m.text());
  });
  page.problems = problems;
  if (opts.before) await opts.before(page);
  await page.goto(d.url + "/");
  if (!opts.noWait) await page.waitForFunction(() => /Mis à jour/.test(document.querySelector("#updated").textContent));
  return page;
}

function clean(page) {
  assert.deepEqual(page.problems, [], "script or console errors on the page");
}

const rowNames = page => page.$$eval("#rows tr", trs => trs.map(tr => tr.dataset.name));
const waitRows = (page, n) => page.waitForFunction(k => document.querySelectorAll("#rows tr").length === k, n);
const row = (page, name) => page.locator(`#rows tr[data-name="${name}"]`);

// ---------- tests ----------

/** Runs bench/old-backup.sh (a re-creation of the old auto-backup.sh) on the tree. */
function oldBackup(tree) {
  execFileSync("bash", [path.join(ROOT, "bench/old-backup.sh")], {
    env: { PATH: "/usr/local/bin:/usr/bin:/bin", ...tree.env },
    stdio: "pipe",
  });
}

test("an archive of the old auto-backup.sh is tagged « ancien format » and verifies", T, async () => {
  const tree = makeTree();
  oldBackup(tree);
  const [old] = archives(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  await waitRows(page, 1);
  const tag = row(page, old).locator('.tag[data-format="old"]');
  assert.equal(await tag.count(), 1);
  assert.equal(await tag.innerText(), "ancien format");
  await row(page, old).getByRole("button", { name: /^Vérifier/ }).click();
  const dlg = page.locator("#dlg");
  await dlg.waitFor({ state: "visible" });
  assert.match(await dlg.innerText(), /Backup intact/);
  assert.match(await dlg.innerText(), /Ancien format/);
  clean(page);
});

test("a success and an archive dated 2099 are not « À jour »: the clock is pointed out", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const [made] = archives(tree);
  // What a run under a clock in 2099 leaves behind.
  const future = "backup-20990101-030000.tar.gz";
  fs.copyFileSync(path.join(tree.backups, made), path.join(tree.backups, future));
  const status = JSON.parse(fs.readFileSync(path.join(tree.backups, "last-backup-status.json"), "utf8"));
  Object.assign(status, {
    timestamp: "2099-01-01T03:00:00+00:00", date: "2099-01-01", archive: future,
    last_success: "2099-01-01T03:00:00+00:00",
  });
  fs.writeFileSync(path.join(tree.backups, "last-backup-status.json"), JSON.stringify(status));
  const d = await startDaemon(tree);
  const page = await open(d);
  assert.equal(await page.getAttribute("#state", "data-level"), "warn");
  assert.equal(await page.textContent("#badge"), "Horloge à vérifier");
  assert.match(await page.textContent("#alert"), /2099/);
  clean(page);
});
