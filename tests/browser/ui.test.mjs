// End-to-end tests of the backups page (`GET /`, src/serve/page.html) in Debian's Chromium,
// driven by playwright-core through the harness in lib.mjs. Each test starts its own
// `neopro-backup serve` on a free port over a throwaway Pi-like tree, so tests never
// share state. NEOPRO_BIN and CHROMIUM: see lib.mjs.
// Screenshots go to tests/artifacts/ (ignored by git).

import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  setup, onCleanup, newPage, ARTIFACTS, T, makeTree, runBackup, archives, FAR, startDaemon,
  apiGet, open, clean, rowNames, waitRows, row,
} from "./lib.mjs";

const TOKEN = "test-token-0123456789-abcdef";

setup();

// ---------- tests ----------

test("the page is self-contained, under 60 KiB, with a CSP", T, async () => {
  const tree = makeTree();
  const d = await startDaemon(tree);
  const r = await fetch(d.url + "/");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/html/);
  assert.match(r.headers.get("content-security-policy") || "", /default-src 'none'/);
  const html = await r.text();
  const size = Buffer.byteLength(html);
  assert.ok(size < 60 * 1024, `page is ${size} bytes`);
  assert.match(html, /<html lang="fr">/);
  // Nothing fetched from elsewhere: no external src/href, no @import, no url(http…).
  assert.doesNotMatch(html, /(src|href)\s*=\s*["']?(https?:)?\/\//i);
  assert.doesNotMatch(html, /@import|url\(\s*["']?https?:/i);
});

test("lists the backups, newest first, with date, size and age", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  runBackup(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  await waitRows(page, 2);
  const api = await apiGet(d, "/api/backups");
  assert.deepEqual(await rowNames(page), api.body.backups.map(b => b.name));
  assert.deepEqual(await rowNames(page), archives(tree));
  const first = row(page, archives(tree)[0]);
  const text = await first.innerText();
  assert.match(text, /à \d\d:\d\d/, "date");
  assert.match(text, /\d+ o|Ko/, "size");
  assert.match(text, /moins d'un jour|jour/, "age");
  assert.match(text, /le plus récent/);
  for (const label of ["Télécharger", "Vérifier", "Restaurer", "Supprimer"]) {
    assert.equal(await first.getByRole("button", { name: new RegExp("^" + label) }).count(), 1, label);
  }
  // Status card: a fresh success, next run shown, switch on.
  assert.equal(await page.getAttribute("#state", "data-level"), "ok");
  assert.equal(await page.textContent("#badge"), "À jour");
  assert.match(await page.textContent("#f-result"), /Réussi/);
  assert.match(await page.textContent("#f-next"), new RegExp(`à ${FAR} \\(UTC\\)`));
  assert.equal(await page.getByRole("switch", { name: /Backup automatique/ }).isChecked(), true);
  // The log lines are there, folded.
  assert.equal(await page.$eval("#logbox", e => e.open), false);
  assert.match(await page.textContent("#logs"), /backup done/);
  clean(page);
});

test("« Créer un backup » shows a busy state, adds a row and shows the output", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const d = await startDaemon(tree);
  // The request is held until the busy state has been seen (an event, not a delay).
  let release;
  const held = new Promise(r => { release = r; });
  const page = await open(d, {
    before: pg => pg.route("**/api/backups/create", async route => {
      await held;
      await route.continue();
    }),
  });
  await waitRows(page, 1);
  const before = archives(tree);
  const button = page.getByRole("button", { name: "Créer un backup" });
  await button.click();
  await page.waitForFunction(() => document.querySelector("#create").getAttribute("aria-busy") === "true");
  assert.equal(await page.isDisabled("#create"), true);
  assert.match(await page.textContent("#create"), /Backup en cours/);
  release();
  await waitRows(page, 2);
  await page.waitForFunction(() => !document.querySelector("#create").disabled);
  assert.equal(await page.textContent("#create .lbl"), "Créer un backup");
  const now = archives(tree);
  assert.equal(now.length, 2);
  const added = now.find(n => !before.includes(n));
  assert.deepEqual((await rowNames(page))[0], added, "the new backup is the first row");
  assert.equal(await page.isVisible("#out-text"), true, "the run's output is shown");
  assert.match(await page.textContent("#out-text"), new RegExp("backup done: " + added.replace(/\./g, "\\.")));
  await page.waitForFunction(() => /Backup créé avec succès/.test(document.querySelector("#toast").textContent));
  clean(page);
});

test("the switch turns the daily backup off and on (mouse and keyboard)", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  const sw = page.getByRole("switch", { name: /Backup automatique quotidien/ });
  assert.equal(await sw.isChecked(), true);
  assert.equal((await apiGet(d, "/api/backups/auto-status")).body.enabled, true);

  await sw.click();
  await page.waitForFunction(() => /désactivé/.test(document.querySelector("#toast").textContent));
  let st = (await apiGet(d, "/api/backups/auto-status")).body;
  assert.equal(st.enabled, false);
  assert.equal(st.nextRun, null);
  await page.waitForFunction(() => /Désactivé/.test(document.querySelector("#f-next").textContent));
  assert.equal(await sw.isChecked(), false);

  await sw.focus();
  await page.keyboard.press("Space");
  await page.waitForFunction(() => /Backup automatique activé/.test(document.querySelector("#toast").textContent));
  st = (await apiGet(d, "/api/backups/auto-status")).body;
  assert.equal(st.enabled, true);
  assert.equal(typeof st.nextRun, "string");
  await page.waitForFunction(far => document.querySelector("#f-next").textContent.includes(far), FAR);
  assert.equal(await sw.isChecked(), true);
  clean(page);
});

test("delete asks first (cancel keeps it), then removes the row and the file", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  runBackup(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  await waitRows(page, 2);
  const [newest, oldest] = archives(tree);
  const del = row(page, oldest).getByRole("button", { name: /^Supprimer/ });

  await del.click();
  const dlg = page.locator("#dlg");
  await dlg.waitFor({ state: "visible" });
  assert.match(await dlg.innerText(), /Supprimer ce backup/);
  assert.match(await dlg.innerText(), /définitive/);
  assert.match(await dlg.innerText(), new RegExp(oldest.replace(/\./g, "\\.")));
  // The safe answer has the focus: Enter here would not delete.
  assert.equal(await page.evaluate(() => document.activeElement.id), "dlg-cancel");
  await dlg.getByRole("button", { name: "Annuler" }).click();
  await dlg.waitFor({ state: "hidden" });
  assert.ok(fs.existsSync(path.join(tree.backups, oldest)), "cancel keeps the file");
  assert.equal(await page.locator("#rows tr").count(), 2);

  // Escape closes it too, and the focus goes back to the button.
  await del.focus();
  await page.keyboard.press("Enter");
  await dlg.waitFor({ state: "visible" });
  await page.keyboard.press("Escape");
  await dlg.waitFor({ state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.getAttribute("aria-label")), "Supprimer " + oldest);
  assert.ok(fs.existsSync(path.join(tree.backups, oldest)));

  await del.click();
  await dlg.waitFor({ state: "visible" });
  await dlg.getByRole("button", { name: "Supprimer" }).click();
  await waitRows(page, 1);
  assert.deepEqual(await rowNames(page), [newest]);
  assert.ok(!fs.existsSync(path.join(tree.backups, oldest)), "the file is gone");
  const api = await apiGet(d, "/api/backups");
  assert.deepEqual(api.body.backups.map(b => b.name), [newest]);
  await page.waitForFunction(() => /Backup supprimé/.test(document.querySelector("#toast").textContent));
  clean(page);
});

test("download delivers the exact bytes of the archive", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  const requests = [];
  page.on("request", r => requests.push(r.url()));
  await waitRows(page, 1);
  const [name] = archives(tree);
  const [dl] = await Promise.all([
    page.waitForEvent("download"),
    row(page, name).getByRole("button", { name: /^Télécharger/ }).click(),
  ]);
  assert.equal(dl.suggestedFilename(), name);
  const got = fs.readFileSync(await dl.path());
  const want = fs.readFileSync(path.join(tree.backups, name));
  assert.equal(got.length, want.length);
  assert.ok(got.equals(want), "downloaded bytes differ from the archive on disk");
  assert.ok(requests.some(u => u.endsWith("/api/backups/download/" + name)));
  clean(page);
});

test("verify shows the result: intact, and damaged for a truncated archive", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const [good] = archives(tree);
  // A damaged copy under another valid name.
  const bad = "backup-20200101-000000.tar.gz";
  const bytes = fs.readFileSync(path.join(tree.backups, good));
  fs.writeFileSync(path.join(tree.backups, bad), bytes.subarray(0, Math.floor(bytes.length / 2)), { mode: 0o600 });
  const d = await startDaemon(tree);
  const page = await open(d);
  await waitRows(page, 2);
  const dlg = page.locator("#dlg");

  await row(page, good).getByRole("button", { name: /^Vérifier/ }).click();
  await dlg.waitFor({ state: "visible" });
  assert.match(await page.textContent("#dlg-title"), /Backup intact/);
  assert.match(await dlg.innerText(), /configuration\.json/);
  await dlg.getByRole("button", { name: "Fermer" }).click();
  await dlg.waitFor({ state: "hidden" });
  assert.match(await row(page, good).innerText(), /vérifié intact/);

  await row(page, bad).getByRole("button", { name: /^Vérifier/ }).click();
  await dlg.waitFor({ state: "visible" });
  assert.match(await page.textContent("#dlg-title"), /endommagé/);
  await page.keyboard.press("Escape");
  await dlg.waitFor({ state: "hidden" });
  assert.match(await row(page, bad).innerText(), /endommagé/);
  clean(page);
});

test("restore against the real daemon: dry run first, cancel changes nothing, then restore", T, async () => {
  // The dry run comes first in a confirmation dialog, cancelling it changes nothing, and
  // confirming it puts the archived file back beside a safety backup. A page that says
  // restore is unavailable fails this test.
  const tree = makeTree();
  runBackup(tree);
  const [name] = archives(tree);
  const cfg = path.join(tree.env.NEOPRO_DIR, "webapp/configuration.json");
  const archived = fs.readFileSync(cfg);
  fs.writeFileSync(cfg, '{"club": "changed since the backup"}\n');
  const d = await startDaemon(tree);
  const page = await open(d);
  const btn = row(page, name).getByRole("button", { name: /^Restaurer/ });
  const dlg = page.locator("#dlg");
  await btn.click();
  await dlg.waitFor({ state: "visible" });
  assert.match(await page.textContent("#dlg-title"), /Restaurer ce backup/, await dlg.innerText());
  const report = await dlg.locator(".report li").allInnerTexts();
  assert.ok(report.length > 0, "the dry-run report is listed");
  assert.ok(report.some(l => /configuration\.json/.test(l)), report.join("\n"));
  await page.screenshot({ path: path.join(ARTIFACTS, "ui-restore-real.png") });
  await dlg.getByRole("button", { name: "Annuler" }).click();
  await dlg.waitFor({ state: "hidden" });
  assert.deepEqual(archives(tree), [name], "cancel: no safety backup");
  assert.match(fs.readFileSync(cfg, "utf8"), /changed since the backup/, "cancel: nothing restored");

  await btn.click();
  await dlg.waitFor({ state: "visible" });
  await dlg.getByRole("button", { name: "Restaurer" }).click();
  await page.waitForFunction(() => /Restauration terminée|Échec/.test(document.querySelector("#dlg-title").textContent));
  assert.match(await page.textContent("#dlg-title"), /Restauration terminée/, await dlg.innerText());
  assert.ok(fs.readFileSync(cfg).equals(archived), "configuration.json is back");
  assert.equal(archives(tree).length, 2, "a safety backup was made");
  await dlg.getByRole("button", { name: "Fermer" }).click();
  await waitRows(page, 2);
  clean(page);
});

test("restore flow: the dry-run report first, then the result (API answers mocked)", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const d = await startDaemon(tree);
  const calls = [];
  const page = await open(d, {
    before: pg => pg.route("**/api/backups/restore/*", async route => {
      const body = JSON.parse(route.request().postData() || "{}");
      calls.push(body);
      const json = body.dryRun
        ? { success: true, dryRun: true, report: [{ file: "configuration.json", action: "replace", size: 52 }, "sync-agent.env", { path: "/etc/neopro/site.conf", changed: false }] }
        : { success: true, restored: ["configuration.json", "sync-agent.env"], safetyBackup: "backup-20991231-235959.tar.gz" };
      await route.fulfill({ status: 200, contentType: "application/json; charset=utf-8", body: JSON.stringify(json) });
    }),
  });
  const [name] = archives(tree);
  const dlg = page.locator("#dlg");
  const restoreBtn = row(page, name).getByRole("button", { name: /^Restaurer/ });

  await restoreBtn.click();
  await dlg.waitFor({ state: "visible" });
  assert.match(await page.textContent("#dlg-title"), /Restaurer ce backup/);
  const report = await dlg.locator(".report li").allInnerTexts();
  assert.equal(report.length, 3);
  assert.match(report[0], /configuration\.json.*action : replace/);
  assert.equal(report[1], "sync-agent.env");
  assert.match(report[2], /\/etc\/neopro\/site\.conf/);
  await page.screenshot({ path: path.join(ARTIFACTS, "ui-restore-dialog.png") });
  await dlg.getByRole("button", { name: "Annuler" }).click();
  await dlg.waitFor({ state: "hidden" });
  assert.deepEqual(calls, [{ dryRun: true }], "cancel sends nothing more");

  await restoreBtn.click();
  await dlg.waitFor({ state: "visible" });
  await dlg.getByRole("button", { name: "Restaurer" }).click();
  await page.waitForFunction(() => /Restauration terminée/.test(document.querySelector("#dlg-title").textContent));
  assert.deepEqual(calls, [{ dryRun: true }, { dryRun: true }, { dryRun: false }]);
  assert.match(await dlg.innerText(), /backup-20991231-235959\.tar\.gz/);
  await dlg.getByRole("button", { name: "Fermer" }).click();
  await dlg.waitFor({ state: "hidden" });

  // A 500 from the real restore is shown, not swallowed.
  await page.unroute("**/api/backups/restore/*");
  await page.route("**/api/backups/restore/*", route => route.fulfill({
    status: 500, contentType: "application/json", body: JSON.stringify({ success: false, error: "Échec de la restauration", details: "disque plein" }),
  }));
  await restoreBtn.click();
  await dlg.waitFor({ state: "visible" });
  assert.match(await page.textContent("#dlg-title"), /Restauration impossible/);
  assert.match(await dlg.innerText(), /disque plein/);
  await dlg.getByRole("button", { name: "Fermer" }).click();
  clean(page);
});

test("with API_TOKEN the page asks for the token, then works (token never in a URL)", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  runBackup(tree);
  const d = await startDaemon(tree, { API_TOKEN: TOKEN });
  assert.equal((await apiGet(d, "/api/backups")).status, 401);
  const page = await open(d, { noWait: true });
  const urls = [];
  page.on("request", r => urls.push(r.url()));
  const tok = page.locator("#tokdlg");
  await tok.waitFor({ state: "visible" });
  assert.equal(await page.locator("#rows tr").count(), 0);

  // A wrong token is refused and asked again.
  await page.getByLabel("Jeton d'accès", { exact: true }).fill("wrong-token-wrong-token");
  await page.getByRole("button", { name: "Valider" }).click();
  await page.waitForFunction(() => /refusé/.test(document.querySelector("#tok-err").textContent));
  assert.equal(await tok.isVisible(), true);
  // Escape does not dismiss it: nothing works without the token.
  await page.keyboard.press("Escape");
  assert.equal(await tok.isVisible(), true);

  await page.getByLabel("Jeton d'accès", { exact: true }).fill(TOKEN);
  await page.keyboard.press("Enter");
  await tok.waitFor({ state: "hidden" });
  await waitRows(page, 2);
  assert.deepEqual(await rowNames(page), archives(tree));
  assert.equal(await page.evaluate(() => sessionStorage.getItem("neopro-backup-token")), TOKEN);

  // State-changing calls carry it too.
  await page.getByRole("button", { name: "Créer un backup" }).click();
  await waitRows(page, 3);
  await page.getByRole("switch").click();
  await page.waitForFunction(() => /désactivé/.test(document.querySelector("#toast").textContent));
  assert.equal((await apiGet(d, "/api/backups/auto-status", TOKEN)).body.enabled, false);

  // Download: fetch + blob with the Bearer header.
  const [name] = archives(tree);
  const [dl] = await Promise.all([
    page.waitForEvent("download"),
    row(page, name).getByRole("button", { name: /^Télécharger/ }).click(),
  ]);
  assert.ok(fs.readFileSync(await dl.path()).equals(fs.readFileSync(path.join(tree.backups, name))));

  // A reload in the same tab keeps it (sessionStorage): no prompt.
  await page.reload();
  await page.waitForFunction(() => /Mis à jour/.test(document.querySelector("#updated").textContent));
  assert.equal(await tok.isVisible(), false);
  assert.equal(await page.locator("#rows tr").count(), 3);

  assert.ok(urls.length > 5);
  for (const u of urls) assert.ok(!u.includes(TOKEN), "token in a URL: " + u);
  await page.screenshot({ path: path.join(ARTIFACTS, "ui-token.png") });
  clean(page);
});

test("status card: warning colour past 25 h, the error in French words and its technical detail on failure", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const statusFile = path.join(tree.backups, "last-backup-status.json");
  const st = JSON.parse(fs.readFileSync(statusFile, "utf8"));
  const old = new Date(Date.now() - 30 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, "+00:00");
  fs.writeFileSync(statusFile, JSON.stringify({ ...st, timestamp: old, date: old.slice(0, 10), last_success: old }));
  const d = await startDaemon(tree);
  const page = await open(d);
  assert.equal(await page.getAttribute("#state", "data-level"), "warn");
  assert.equal(await page.textContent("#badge"), "En retard");
  assert.match(await page.textContent("#alert"), /plus de 25 h/);
  const colours = await page.$eval("#state", e => [getComputedStyle(e).backgroundColor, getComputedStyle(document.querySelector(".card:not(.state)")).backgroundColor]);
  assert.notEqual(colours[0], colours[1], "the card takes the warning colour");

  fs.writeFileSync(statusFile, JSON.stringify({
    ...st, timestamp: new Date().toISOString(), success: false, archive: null, size: null, size_bytes: null,
    error: "copying /home/pi/neopro/webapp/configuration.json failed: no space left on the device holding /home/pi/neopro-backups (0 B free)",
    last_success: old,
  }));
  await page.getByRole("button", { name: "Actualiser" }).click();
  await page.waitForFunction(() => document.querySelector("#state").dataset.level === "err");
  assert.equal(await page.textContent("#badge"), "Échec");
  // The French words of its code (the status was written without one, as by an older
  // version: the server computes it), prominent; the raw error beside, smaller.
  const words = "La carte SD (ou le disque de sauvegarde) est pleine.";
  assert.match(await page.textContent("#alert"), /^Le dernier backup a échoué : La carte SD \(ou le disque de sauvegarde\) est pleine\. Libérez de la place/);
  assert.match(await page.textContent("#f-result"), /Échec.*La carte SD.*Détail technique : copying \/home\/pi\/neopro\/webapp\/configuration\.json failed: no space left/s);
  const why = page.locator("#f-result .why");
  const raw = page.locator("#f-result small");
  assert.ok(await why.isVisible(), "the words are shown");
  assert.ok((await why.textContent()).startsWith(words));
  assert.ok(await raw.isVisible(), "the raw error is shown");
  assert.match(await raw.textContent(), /^Détail technique : copying /);
  const [wordsSize, rawSize] = await Promise.all([why, raw].map(l => l.evaluate(e => parseFloat(getComputedStyle(e).fontSize))));
  assert.ok(rawSize < wordsSize, `the raw error is smaller (${rawSize} < ${wordsSize})`);
  await page.screenshot({ path: path.join(ARTIFACTS, "ui-failure.png"), fullPage: true });
  clean(page);
});

test("a refresh does not move anything; keyboard reaches every control", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  runBackup(tree);
  const d = await startDaemon(tree);
  const page = await open(d);
  await waitRows(page, 2);
  await page.$$eval("#rows tr", trs => trs.forEach((tr, i) => { tr.dataset.mark = String(i); }));
  const boxes = async () => page.$$eval("#rows tr, #state, #create, main > section", els => els.map(e => JSON.stringify(e.getBoundingClientRect())));
  const a = await boxes();
  const stamp = await page.textContent("#updated");
  await page.waitForTimeout(1100);
  await page.getByRole("button", { name: "Actualiser" }).click();
  await page.waitForFunction(s => document.querySelector("#updated").textContent !== s, stamp);
  assert.deepEqual(await boxes(), a, "layout moved on refresh");
  assert.deepEqual(await page.$$eval("#rows tr", trs => trs.map(tr => tr.dataset.mark)), ["0", "1"], "rows were rebuilt");

  // Every control is reachable with Tab, and every one has a name.
  const seen = new Set();
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press("Tab");
    const { id, name, tag } = await page.evaluate(() => {
      const e = document.activeElement;
      const lab = e.getAttribute("aria-label") || (e.labels && e.labels[0] && e.labels[0].textContent) || e.textContent;
      return { id: e.id, tag: e.tagName, name: (lab || "").trim() };
    });
    if (tag === "BODY") continue;
    assert.ok(name.length > 0, `unnamed control ${tag}#${id}`);
    seen.add(id || name);
  }
  for (const want of ["refresh", "auto", "create"]) assert.ok(seen.has(want), "Tab never reached #" + want);
  const [n] = archives(tree);
  for (const act of ["Télécharger", "Vérifier", "Restaurer", "Supprimer"]) assert.ok(seen.has(act + " " + n), act);
  clean(page);
});

test("screenshots: desktop, phone and the Pi's 800×480 screen, nothing wider than the screen", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  runBackup(tree);
  runBackup(tree);
  const d = await startDaemon(tree);
  const shots = [
    ["ui-desktop.png", { width: 1280, height: 900 }, 1],
    ["ui-phone.png", { width: 390, height: 844 }, 2],
    ["ui-pi.png", { width: 800, height: 480 }, 1],
  ];
  for (const [file, viewport, scale] of shots) {
    const page = await open(d, { viewport, scale });
    await waitRows(page, 3);
    // Show the log fold open and a run's output, as after a click on « Créer un backup ».
    await page.$eval("#logbox", e => { e.open = true; });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${file}: the page is ${overflow}px wider than the screen`);
    for (const b of await page.$$("#rows button, #create, #auto")) {
      const box = await b.boundingBox();
      assert.ok(box && box.height >= 24, `${file}: a control is too small to touch`);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: true });
    clean(page);
  }
});

// ---------- framing (clickjacking) ----------

/** A tiny site on another free port (another origin): `/?src=URL` is a page that frames URL. */
async function framingSite() {
  const http = await import("node:http");
  const server = http.createServer((req, res) => {
    const src = new URL(req.url, "http://x").searchParams.get("src") || "about:blank";
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>other site</title><iframe id="f" width="800" height="600" src="${src.replace(/"/g, "&quot;")}"></iframe>`);
  });
  await new Promise(res => server.listen(0, "127.0.0.1", res));
  onCleanup(() => new Promise(res => server.close(res)));
  return `http://127.0.0.1:${server.address().port}`;
}

/** Opens `site` framing the daemon's page; resolves with { blocked, loaded }:
 *  blocked = Chromium refused the frame for its CSP frame-ancestors (console message),
 *  loaded = the framed page ran and showed its data. */
async function frameFrom(site, d) {
  const page = await newPage();
  const refused = [];
  page.on("console", m => { if (/frame-ancestors/.test(m.text())) refused.push(m.text()); });
  await page.goto(`${site}/?src=${encodeURIComponent(d.url + "/")}`);
  const frame = () => page.frames().find(f => f !== page.mainFrame());
  // Either the frame's own script fills #updated, or Chromium says it refused the frame.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const f = frame();
    const loaded = f && f.url().startsWith(d.url) &&
      await f.evaluate(() => /Mis à jour/.test(document.querySelector("#updated")?.textContent || "")).catch(() => false);
    if (loaded || refused.length) return { blocked: refused.length > 0, loaded: Boolean(loaded), refused, url: f && f.url() };
    if (Date.now() > deadline) throw new Error("the frame neither loaded nor was refused within 20 s");
    await page.waitForTimeout(100);
  }
}

test("framing: another site cannot frame the page (frame-ancestors 'self')", T, async () => {
  const tree = makeTree();
  const site = await framingSite();
  const d = await startDaemon(tree);
  const r = await fetch(d.url + "/");
  assert.match(r.headers.get("content-security-policy"), /frame-ancestors 'self'$/);
  const got = await frameFrom(site, d);
  assert.ok(got.blocked && !got.loaded, `a foreign origin framed the page: ${JSON.stringify(got)}`);
});

test("framing: an origin in FRAME_ANCESTORS (the admin panel) can frame the page, others still cannot", T, async () => {
  const tree = makeTree();
  runBackup(tree);
  const panel = await framingSite();
  const other = await framingSite();
  const d = await startDaemon(tree, { FRAME_ANCESTORS: `https://admin.example.org ${panel}` });
  const got = await frameFrom(panel, d);
  assert.ok(got.loaded && !got.blocked, `the panel's origin could not frame the page: ${JSON.stringify(got)}`);
  const foreign = await frameFrom(other, d);
  assert.ok(foreign.blocked && !foreign.loaded, `a foreign origin framed the page: ${JSON.stringify(foreign)}`);
});
