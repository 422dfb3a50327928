// End-to-end tests of the fleet dashboard (`neopro-backup fleet serve`, src/serve/fleet.html)
// in Debian's Chromium, driven by playwright-core, against a real S3 server: SeaweedFS
// on loopback (scripts/seaweedfs.sh). The bucket is filled through SeaweedFS's filer;
// each test works under a prefix of its own and starts its own dashboard on a port the
// system picks.
//
//   NEOPRO_TEST_S3, NEOPRO_TEST_FILER  SeaweedFS's S3 and filer URLs (required)
//   NEOPRO_BIN, CHROMIUM  the binary and the browser (the harness in lib.mjs)
//   NEOPRO_FLEET_SCREENSHOT  also write the desktop screenshot there (docs/fleet.png)
// Screenshots go to tests/artifacts/ (ignored by git). The 10,000-site case prints its
// timings (filling the bucket, the dashboard's first read, the page's load and filters).

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setup, onCleanup, newPage, watchProblems, startServing, ROOT, ARTIFACTS, T } from "./lib.mjs";
import { fillFleet, site, TROUS, TROUS_GAPS } from "./genfleet.mjs";

const S3 = process.env.NEOPRO_TEST_S3 || "";
const FILER = (process.env.NEOPRO_TEST_FILER || "").replace(/\/$/, "");
const BUCKET = "neopro-test";
// The identity of scripts/seaweedfs.sh.
const ACCESS_KEY = "NEOPROTESTKEY";
const SECRET_KEY = "neopro-test-secret-0123456789";
const TOKEN = "fleet-browser-token-0123456789";

setup({
  check: async () => {
    assert.ok(S3 && FILER, "set NEOPRO_TEST_S3 and NEOPRO_TEST_FILER (SeaweedFS: scripts/seaweedfs.sh start)");
    const r = await fetch(FILER + "/", { signal: AbortSignal.timeout(5000) }).catch(e => ({ status: 0, e }));
    assert.ok(r.status > 0, `SeaweedFS's filer does not answer at ${FILER}: scripts/seaweedfs.sh start`);
  },
});

// ---------- the bucket ----------

let n = 0;
const uniquePrefix = name => `b${process.pid}-${Date.now()}-${n++}-${name}`;

async function put(key, body) {
  const r = await fetch(`${FILER}/buckets/${BUCKET}/${key}`, { method: "PUT", body });
  assert.ok(r.ok, `filer PUT ${key}: HTTP ${r.status}`);
}

const iso = unix => new Date(unix * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
const now = () => Math.floor(Date.now() / 1000);
function archive(daysAgo) {
  const d = new Date(Date.now() - daysAgo * 86400_000).toISOString();
  return `backup-${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}-030000.tar.gz`;
}
function status({ success = true, hours = 2, pending = 0, error = null }) {
  const last = iso(now() - hours * 3600);
  const ts = success ? last : iso(now() - 600);
  return JSON.stringify({
    timestamp: ts, date: ts.slice(0, 10), success, archive: archive(0), size: "1.2 MB",
    size_bytes: 1258291, backups_count: 7, retention_days: 7, duration_ms: 812, warnings: [],
    error: success ? null : error, last_success: last,
    offsite: { pending, last_upload: last, error: pending ? "PUT s3://…: cannot connect" : null },
  });
}

// A club fleet: alphabetically, the failed and the stale sites come last, so only the
// dashboard's ordering can put them first.
const FLEET = {
  "club-annecy": { hours: 3 },
  "club-bordeaux": { hours: 5 },
  "club-brest": { hours: 4, pending: 2 },
  "club-dijon": { hours: 1 },
  "club-lille": { hours: 7 },
  "club-lyon": { hours: 2 },
  "club-lyon-gerland": { hours: 6, pending: 1 },
  "club-marseille": { hours: 2 },
  "club-nantes": { hours: 9 },
  "club-xertigny": null, // copies, but never a status
  "club-yverdon": { hours: 50 },
  "club-zurich": { success: false, hours: 20, error: "No space left on device (os error 28)" },
};

async function fill(prefix) {
  const jobs = [];
  for (const [site, st] of Object.entries(FLEET)) {
    for (let d = 0; d < 5; d++) jobs.push(put(`${prefix}/${site}/${archive(d + (st && st.hours > 40 ? 3 : 0))}`, Buffer.alloc(1500 + d * 100, 1)));
    if (st) jobs.push(put(`${prefix}/${site}/last-backup-status.json`, status(st)));
  }
  await Promise.all(jobs);
}

// ---------- the dashboard ----------

function startDashboard(prefix, extra = {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "neopro-fleet-ui-"));
  fs.writeFileSync(path.join(root, "empty.conf"), "");
  onCleanup(() => fs.rmSync(root, { recursive: true, force: true }));
  const env = {
    TZ: "UTC", LANG: "C.UTF-8", S3_ENDPOINT: S3, S3_BUCKET: BUCKET, S3_ACCESS_KEY: ACCESS_KEY,
    S3_SECRET_KEY: SECRET_KEY, S3_PREFIX: prefix, NEOPRO_FLEET_CACHE_SECS: "3600", ...extra,
  };
  return startServing(["--config", path.join(root, "empty.conf"), "fleet", "serve", "--listen", "127.0.0.1:0"],
    env, "fleet serve");
}

/** A fresh browser context on the page; records script errors and requests elsewhere. */
async function open(d, opts = {}) {
  const page = await newPage({ viewport: opts.viewport || { width: 1280, height: 860 } });
  const problems = watchProblems(page);
  const origin = new URL(d.url).origin;
  page.on("request", r => { if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) problems.push("request elsewhere: " + r.url()); });
  page.problems = problems;
  await page.goto(d.url + "/");
  return page;
}

const visible = page => page.$$eval("#rows tr", trs => trs.filter(tr => !tr.hidden).map(tr => tr.cells[0].textContent));
const waitLoaded = page => page.waitForFunction(() => document.querySelectorAll("#rows tr").length > 0);

// ---------- tests ----------

test("worst first: the failed site, then the stale ones; counts at the top; the filter works", T, async () => {
  const prefix = uniquePrefix("fleet");
  await fill(prefix);
  const d = await startDashboard(prefix);
  const page = await open(d);
  await waitLoaded(page);
  const all = await visible(page);
  assert.equal(all.length, 12);
  assert.deepEqual(all.slice(0, 3), ["club-zurich", "club-xertigny", "club-yverdon"]);
  assert.deepEqual(all.slice(3, 5).sort(), ["club-brest", "club-lyon-gerland"]);
  const states = await page.$$eval("#rows tr", trs => trs.map(tr => tr.dataset.state));
  assert.deepEqual(states.slice(0, 5), ["failed", "stale", "stale", "pending", "pending"]);
  // What a row says.
  const failed = page.locator("#rows tr").first();
  assert.match(await failed.innerText(), /Échec/);
  assert.match(await failed.innerText(), /No space left on device/);
  assert.match(await failed.innerText(), /il y a 20 h/);
  const never = page.locator("#rows tr").nth(1);
  assert.match(await never.innerText(), /Jamais/);
  // The error in French words (error_words), the raw one beside as the technical detail.
  assert.match(await never.innerText(), /Ce site n'a encore envoyé aucun état/);
  assert.match(await never.innerText(), /Détail technique : no status in the bucket/);
  assert.match(await page.locator("#rows tr").nth(2).innerText(), /> 25 h[\s\S]*il y a 2 jours/);
  assert.match(await page.locator("#rows tr").last().innerText(), /À jour[\s\S]*Réussi[\s\S]*5 · /);
  // The 30-night strips: archives the last 5 nights (the nights before a site's oldest
  // copy are faint, not gaps); club-yverdon's stopped 3 nights ago (none today yet:
  // dashed, not a gap); club-zurich's last run failed.
  const zurich = await stripOf(page.locator("#rows tr").first());
  assert.deepEqual(zurich.cells, { y: [25, 26, 27, 28], b: range(0, 25), x: [29] });
  assert.equal(zurich.label, "5 nuits sur 5 avec une sauvegarde ; 25 nuits avant sa plus ancienne copie ; dernier essai en échec");
  assert.deepEqual((await stripOf(page.locator("#rows tr").nth(1))).cells, { y: [25, 26, 27, 28, 29], b: range(0, 25) });
  const yverdon = await stripOf(page.locator("#rows tr").nth(2));
  assert.deepEqual(yverdon.cells, { y: [22, 23, 24, 25, 26], n: [27, 28], t: [29], b: range(0, 22) });
  assert.match(yverdon.label, /^5 nuits sur 8 avec une sauvegarde \(aujourd'hui : pas encore\) ; sans sauvegarde : [^;]+ ; 22 nuits avant sa plus ancienne copie$/);
  // Counts.
  const count = id => page.textContent("#n-" + id);
  assert.equal(await count("total"), "12");
  assert.equal(await count("failed"), "1");
  assert.equal(await count("stale"), "2");
  assert.equal(await count("pending"), "2");
  assert.equal(await count("ok"), "7");
  assert.match(await page.textContent("#updated"), /Lu dans le seau/);
  const shot = path.join(ARTIFACTS, "fleet.png");
  await page.screenshot({ path: shot });
  if (process.env.NEOPRO_FLEET_SCREENSHOT) fs.copyFileSync(shot, path.resolve(ROOT, process.env.NEOPRO_FLEET_SCREENSHOT));

  // The filter: by name, case-insensitive, as one types.
  await page.getByLabel("Filtrer par nom de site").fill("LYON");
  assert.deepEqual(await visible(page), ["club-lyon-gerland", "club-lyon"]);
  assert.match(await page.textContent("#shown"), /2 affichés sur 12/);
  await page.getByLabel("Filtrer par nom de site").fill("nowhere");
  assert.deepEqual(await visible(page), []);
  assert.equal(await page.isVisible("#empty"), true);
  assert.match(await page.textContent("#empty"), /Aucun site ne correspond/);
  await page.getByLabel("Filtrer par nom de site").fill("");
  assert.equal((await visible(page)).length, 12);
  // A count is a filter too.
  await page.getByRole("button", { name: /en échec/ }).click();
  assert.deepEqual(await visible(page), ["club-zurich"]);
  await page.getByRole("button", { name: /plus de 25 h/ }).click();
  assert.deepEqual(await visible(page), ["club-xertigny", "club-yverdon"]);
  await page.getByRole("button", { name: /sites en tout/ }).click();
  assert.equal((await visible(page)).length, 12);

  // The same order as the API and as many rows as sites.
  const api = await (await fetch(d.url + "/api/fleet")).json();
  assert.deepEqual(await visible(page), api.sites.map(s => s.site));
  // Phone width: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 800 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "wider than a phone");
  await page.screenshot({ path: path.join(ARTIFACTS, "fleet-phone.png"), fullPage: true });
  assert.deepEqual(page.problems, []);
});

test("with API_TOKEN the page asks for the token, then shows the fleet", T, async () => {
  const prefix = uniquePrefix("token");
  await put(`${prefix}/club-a/last-backup-status.json`, status({ hours: 1 }));
  const d = await startDashboard(prefix, { API_TOKEN: TOKEN });
  const page = await open(d);
  const dialog = page.getByRole("dialog", { name: "Jeton d'accès requis" });
  await dialog.waitFor();
  await page.getByLabel("Jeton d'accès", { exact: true }).fill("wrong-token-0123456789");
  await page.getByRole("button", { name: "Valider" }).click();
  await page.getByText("Ce jeton a été refusé").waitFor();
  await page.getByLabel("Jeton d'accès", { exact: true }).fill(TOKEN);
  await page.getByRole("button", { name: "Valider" }).click();
  await waitLoaded(page);
  assert.deepEqual(await visible(page), ["club-a"]);
  assert.equal(await page.isVisible("#logout"), true);
  assert.deepEqual(page.problems, []);
});

// ---------- 10,000 sites ----------

// What the site row's strip says, and its cells: the x of each subpath of each class
// (y: an archive that night, n: none, t: today not over, x: the last run failed, b:
// before the site's oldest copy).
const stripOf = row => row.locator(".nights").evaluate(sp => {
  const cells = {};
  for (const p of sp.querySelectorAll("path")) cells[p.getAttribute("class")] = [...p.getAttribute("d").matchAll(/M([\d.]+) /g)].map(m => Math.floor(Number(m[1]) / 6));
  return { label: sp.getAttribute("aria-label"), title: sp.getAttribute("title"), cells };
});
const range = (a, b) => Array.from({ length: b - a }, (_, k) => a + k);
const dayFr = daysAgo => new Intl.DateTimeFormat("fr-FR", { timeZone: "UTC", day: "numeric", month: "short" })
  .format(new Date(Date.now() - daysAgo * 86400_000));

test("10,000 sites: counts, filters by name and by state, 200 rows at a time, the 30-night strip; timings", { timeout: 150_000 }, async () => {
  const SITES = 10_000;
  const prefix = uniquePrefix("big");
  let t = Date.now();
  const { counts, objects } = await fillFleet(FILER, BUCKET, prefix, SITES);
  const fillMs = Date.now() - t;
  const d = await startDashboard(prefix);
  // The dashboard's first read of the bucket, before the page: the page's timings are
  // the page's own (the view is then cached for the test: NEOPRO_FLEET_CACHE_SECS).
  t = Date.now();
  const api = await (await fetch(d.url + "/api/fleet")).json();
  const readMs = Date.now() - t;
  assert.equal(api.sites.length, SITES + 1);
  const byName = new Map(api.sites.map(s => [s.site, s]));

  const page = await open(d);
  // Load: from the navigation's start to the first frame with rows (performance.now()
  // counts from the navigation's start).
  const loadMs = await (await page.waitForFunction(() => document.querySelectorAll("#rows tr").length > 0 && performance.now(), null, { polling: "raf" })).jsonValue();
  // A filter, timed from the input event (or the click) to the next frame drawn.
  const clickMs = sel => page.evaluate(sel => new Promise(res => {
    const t0 = performance.now();
    document.querySelector(sel).click();
    requestAnimationFrame(() => setTimeout(() => res(performance.now() - t0)));
  }), sel);
  const type = (q) => page.evaluate(q => new Promise(res => {
    const i = document.querySelector("#filter"), t0 = performance.now();
    i.value = q;
    i.dispatchEvent(new Event("input", { bubbles: true }));
    requestAnimationFrame(() => setTimeout(() => res(performance.now() - t0)));
  }), q);
  const names = () => page.$$eval("#rows tr", trs => trs.map(tr => tr.cells[0].textContent));
  const want = pred => api.sites.filter(pred).map(s => s.site);

  // The counts, the first 200 rows worst first, the rest behind a button.
  const count = id => page.textContent("#n-" + id);
  const fr = n => new Intl.NumberFormat("fr-FR").format(n);
  assert.equal(await count("total"), fr(SITES + 1));
  assert.equal(await count("failed"), fr(counts.failed));
  assert.equal(await count("stale"), fr(counts.stale));
  assert.equal(await count("pending"), fr(counts.pending));
  assert.equal(await count("ok"), fr(counts.ok));
  assert.deepEqual([counts.failed, counts.stale, counts.pending], [200, 200, 400]);
  assert.deepEqual(await names(), want(() => true).slice(0, 200));
  assert.equal(await page.textContent("#shown"), `(${fr(SITES + 1)})`);
  assert.equal(await page.isVisible("#more"), true);
  assert.equal(await page.textContent("#more"), "Afficher 200 de plus…");
  assert.match(await page.textContent("#moresay"), new RegExp(`200 premiers affichés, ${fr(SITES + 1 - 200)} autres`));
  // A failed row: its error, in French words when the server gives them.
  const failedRow = page.locator("#rows tr").first();
  const f = api.sites[0];
  assert.equal(f.state, "failed");
  if (f.error_words) {
    assert.match(await failedRow.locator(".why.words").innerText(), new RegExp(f.error_words.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    assert.equal(await failedRow.locator(".tech").innerText(), "Détail technique : No space left on device (os error 28)");
  } else {
    assert.equal(await failedRow.locator(".why").innerText(), "No space left on device (os error 28)");
  }
  await page.screenshot({ path: path.join(ARTIFACTS, "fleet-10000.png") });

  // By name, one keystroke after the other: "lyon" is one site in 16 (625).
  const keys = {};
  for (const q of ["l", "ly", "lyo", "lyon"]) keys[q] = await type(q);
  const lyon = want(s => s.site.includes("lyon"));
  assert.equal(lyon.length, 625);
  assert.deepEqual(await names(), lyon.slice(0, 200));
  assert.equal(await page.textContent("#shown"), `(625 sur ${fr(SITES + 1)})`);
  await page.click("#more");
  assert.deepEqual(await names(), lyon.slice(0, 400));
  assert.equal(await page.textContent("#more"), "Afficher 200 de plus…");
  await page.click("#more");
  await page.click("#more");
  assert.deepEqual(await names(), lyon);
  assert.equal(await page.isVisible("#more"), false);
  assert.equal(await page.textContent("#shown"), `(625 affichés sur ${fr(SITES + 1)})`);
  // By state too (the count's button), with the name: a new filter starts at 200 again.
  const stateMs = await clickMs('.count[data-state="failed"]');
  assert.equal(await page.getAttribute('.count[data-state="failed"]', "aria-pressed"), "true");
  assert.deepEqual(await names(), want(s => s.site.includes("lyon") && s.state === "failed"));
  assert.equal((await names()).length, 25);
  await type("");
  assert.deepEqual(await names(), want(s => s.state === "failed"));
  assert.equal(await page.isVisible("#more"), false, "200 failed sites: all shown");
  await page.getByRole("button", { name: /plus de 25 h/ }).click();
  assert.deepEqual(await names(), want(s => s.state === "stale"));
  await page.getByRole("button", { name: /restaurations à vérifier/ }).click();
  assert.deepEqual(await names(), want(s => s.drill && s.drill.flagged).slice(0, 200));
  await page.getByRole("button", { name: /sites en tout/ }).click();
  const clearMs = await type("");

  // The strip of a site with gaps: club-trous, an archive every night but 4, 11 and
  // 19 days ago.
  await type("trous");
  assert.deepEqual(await names(), [TROUS]);
  const trous = page.locator("#rows tr").first();
  assert.equal(byName.get(TROUS).nights, range(0, 30).map(i => TROUS_GAPS.includes(29 - i) ? "0" : "1").join(""));
  const st = await stripOf(trous);
  assert.equal(st.label, `27 nuits sur 30 avec une sauvegarde ; sans sauvegarde : ${dayFr(4)}, ${dayFr(11)}, ${dayFr(19)}`);
  assert.equal(st.title, st.label);
  assert.deepEqual(st.cells.n, [10, 18, 25]);
  assert.deepEqual(st.cells.y, range(0, 30).filter(i => ![10, 18, 25].includes(i)));
  assert.equal(st.cells.t, undefined);
  await trous.locator(".nights").screenshot({ path: path.join(ARTIFACTS, "fleet-strip.png") });
  assert.ok(await page.getByRole("img", { name: /^27 nuits sur 30 avec une sauvegarde/ }).isVisible());
  // A stale site: two archives, 2 and 3 days ago, none yet today.
  const stale = site(13);
  assert.equal(stale.kind, "stale");
  await type(stale.name);
  const ss = await stripOf(page.locator("#rows tr").first());
  assert.match(ss.label, /^2 nuits sur 4 avec une sauvegarde \(aujourd'hui : pas encore\) ; sans sauvegarde : [^;]+ ; 26 nuits avant sa plus ancienne copie$/);
  assert.deepEqual(ss.cells.y, [26, 27]);
  assert.deepEqual(ss.cells.t, [29]);
  assert.deepEqual(ss.cells.n, [28]);
  assert.deepEqual(ss.cells.b, range(0, 26));
  // A failed site: its last cell says the failed run.
  const failed = site(7);
  assert.equal(failed.kind, "failed");
  await type(failed.name);
  const fs7 = await stripOf(page.locator("#rows tr").first());
  assert.deepEqual(fs7.cells.x, [29]);
  assert.match(fs7.label, /dernier essai en échec$/);
  assert.deepEqual(page.problems, []);

  const ms = x => Math.round(x) + " ms";
  console.log(`fleet, ${fr(SITES + 1)} sites: bucket filled (${objects} objects) in ${ms(fillMs)}; dashboard's first read ${ms(readMs)}; ` +
    `page load to first rows ${ms(loadMs)}; filter keystrokes ${Object.entries(keys).map(([q, v]) => `"${q}" ${ms(v)}`).join(", ")}; ` +
    `state filter ${ms(stateMs)}; filter cleared ${ms(clearMs)}`);
});
