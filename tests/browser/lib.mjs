// The harness shared by the Chromium tests (ui, field and fleet .test.mjs): Debian's
// Chromium driven by playwright-core, the binary's servers started on a port the system
// picks (read back from their "serving on" line), everything a test starts stopped or
// removed after the file, and, for the backups page (`serve`), a throwaway Pi-like tree
// and the page's helpers. What a file cannot run without (the binary, the browser, and
// whatever its own `check` asserts) fails the file: it is never skipped.
//
//   NEOPRO_BIN  the binary (default: target/release/neopro-backup, built by `make build`)
//   CHROMIUM    the browser (default: /usr/bin/chromium, Debian's package)
// Screenshots go to ARTIFACTS, tests/artifacts/ (ignored by git).

import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
export const BIN = path.resolve(process.env.NEOPRO_BIN || path.join(ROOT, "target/release/neopro-backup"));
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const ARTIFACTS = path.join(ROOT, "tests/artifacts");
export const T = { timeout: 90_000 };

let browser;
const cleanups = [];

/** Run at the end of the file (in reverse order of registration, best effort). */
export function onCleanup(fn) {
  cleanups.push(fn);
}

/** Registers the file's hooks: before its tests, the binary and the browser must be there
 *  and `check` (the file's own prerequisites) must pass, then Chromium is launched; after
 *  them, everything registered with onCleanup, then the browser. */
export function setup({ check } = {}) {
  before(async () => {
    assert.ok(fs.existsSync(BIN), `no binary at ${BIN}: run \`make build\` (or set NEOPRO_BIN)`);
    assert.ok(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
    if (check) await check();
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
}

/** A page in a fresh browser context (empty sessionStorage), closed after the file. */
export async function newPage(contextOptions) {
  const ctx = await browser.newContext(contextOptions);
  onCleanup(() => ctx.close());
  return ctx.newPage();
}

/** Collects the page's script errors and console errors (a CSP violation shows up there). */
export function watchProblems(page) {
  const problems = [];
  page.on("pageerror", e => problems.push("pageerror: " + e.message));
  page.on("console", m => {
    // HTTP errors the page handles (the 401 that asks for the token, a 501 or 500 it
    // explains) are logged by Chromium as failed resources: not a problem of the page.
    if (m.type() === "error" && !/^Failed to load resource: the server responded/.test(m.text())) problems.push("console: " + m.text());
  });
  return problems;
}

/** Spawns the binary with `args` (a server told to listen on 127.0.0.1:0); resolves with
 *  { url, proc, stop, log } once it says "serving on URL", rejects if it exits first or
 *  says nothing within 15 s. `what` names it in those errors. Stopped after the file. */
export function startServing(args, env, what) {
  const proc = spawn(BIN, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const stop = () => new Promise(res => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res();
    proc.once("exit", res);
    proc.kill("SIGTERM");
    setTimeout(() => proc.kill("SIGKILL"), 5000).unref();
  });
  onCleanup(stop);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n` + log)), 15_000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", d => {
      log += d;
      const m = /serving on (http:\/\/\S+)/.exec(log);
      if (m) { clearTimeout(timer); resolve({ url: m[1], proc, stop, log: () => log }); }
    });
    proc.once("exit", code => { clearTimeout(timer); reject(new Error(`${what} exited (${code}):\n${log}`)); });
  });
}

// ---------- the backups page: the Pi-like tree and the daemon ----------

export function makeTree() {
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
  onCleanup(() => fs.rmSync(root, { recursive: true, force: true }));
  return tree;
}

/** One backup with the CLI (a second one within the same second waits for the next). */
export function runBackup(tree) {
  execFileSync(BIN, ["--config", tree.conf, "run"], { env: tree.env, stdio: "pipe" });
}

export function archives(tree) {
  return fs.readdirSync(tree.backups).filter(n => /^backup-\d{8}-\d{6}\.tar\.gz$/.test(n)).sort().reverse();
}

/** HH:MM (UTC, the tests' TZ) twelve hours from now: the daily run never falls inside a
 *  test, whatever the time of day the suite runs at. */
export const FAR = new Date(Date.now() + 12 * 3600 * 1000).toISOString().slice(11, 16);

/** Starts `serve` on a free port; resolves with its base URL once it listens. */
export function startDaemon(tree, extra = {}) {
  const env = { ...tree.env, LISTEN: "127.0.0.1:0", NEOPRO_CATCHUP_DELAY: "3600", BACKUP_TIME: FAR, ...extra };
  return startServing(["--config", tree.conf, "serve"], env, "daemon");
}

export async function apiGet(d, p, token) {
  const r = await fetch(d.url + p, { headers: token ? { Authorization: "Bearer " + token } : {} });
  return { status: r.status, body: await r.json() };
}

// ---------- the backups page in the browser ----------

/** A fresh browser context (empty sessionStorage) on the page; `clean(page)` then fails
 *  the test on any script error or console error. */
export async function open(d, opts = {}) {
  const page = await newPage({ viewport: opts.viewport || { width: 1280, height: 900 }, deviceScaleFactor: opts.scale || 1, acceptDownloads: true });
  page.problems = watchProblems(page);
  if (opts.before) await opts.before(page);
  await page.goto(d.url + "/");
  if (!opts.noWait) await page.waitForFunction(() => /Mis à jour/.test(document.querySelector("#updated").textContent));
  return page;
}

export function clean(page) {
  assert.deepEqual(page.problems, [], "script or console errors on the page");
}

export const rowNames = page => page.$$eval("#rows tr", trs => trs.map(tr => tr.dataset.name));
export const waitRows = (page, n) => page.waitForFunction(k => document.querySelectorAll("#rows tr").length === k, n);
export const row = (page, name) => page.locator(`#rows tr[data-name="${name}"]`);
