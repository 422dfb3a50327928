// « Connecter Google Drive » on the backups page (src/serve/page.html, the « Google
// Drive » card; docs/format.md, Google Drive over the API) in Debian's Chromium, against
// the fake Google of tests/gdrive (fake_google.py: Python's standard library on
// 127.0.0.1, one per test). The volunteer's approval on the phone is the fake's
// /_test/approve with the code the page shows; every wait is on the page's state.
//
//   NEOPRO_BIN, CHROMIUM  the binary and the browser (the harness in lib.mjs)
// Screenshots go to tests/artifacts/ (ignored by git).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setup, onCleanup, makeTree, startDaemon, open, clean, ROOT, ARTIFACTS, T } from "./lib.mjs";

const TOKEN = "gdrive-browser-token-0123456789";
const FAKE = path.join(ROOT, "tests/gdrive/fake_google.py");

setup({
  check: async () => {
    assert.ok(fs.existsSync(FAKE), `no ${FAKE}`);
  },
});

/** The fake Google on a free port (its first stdout line says which), stopped after the file. */
function startFake() {
  const proc = spawn("python3", [FAKE, "--port", "0", "--exit-on-eof"], { stdio: ["pipe", "pipe", "ignore"] });
  onCleanup(() => { proc.stdin.end(); proc.kill("SIGTERM"); });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error("the fake Google did not start: " + out)), 15_000);
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", d => {
      out += d;
      const m = /fake-google listening on (http:\/\/\S+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.once("exit", code => { clearTimeout(timer); reject(new Error(`the fake Google exited (${code}): ${out}`)); });
  });
}

async function control(fake, route, body) {
  const r = await fetch(fake + route, body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${route}: HTTP ${r.status}`);
  return r.json();
}

/** A Pi with Drive configured on a fresh fake (polls every second), its daemon and its page. */
async function pi(config) {
  const fake = await startFake();
  await control(fake, "/_test/config", { interval: 1, ...config });
  const tree = makeTree();
  const d = await startDaemon(tree, {
    GDRIVE_CLIENT_ID: "123-test.apps.googleusercontent.com", GDRIVE_CLIENT_SECRET: "test-secret",
    GDRIVE_FOLDER: "neopro-test", SITE_ID: "club-page",
    NEOPRO_GDRIVE_API_URL: fake, NEOPRO_GOOGLE_OAUTH_URL: fake, API_TOKEN: TOKEN,
  });
  const page = await open(d, { before: pg => pg.addInitScript(t => sessionStorage.setItem("neopro-backup-token", t), TOKEN) });
  await page.locator("#gdrive").waitFor();
  return { fake, tree, d, page };
}

/** Clicks « Connecter Google Drive »; the code the page then shows. */
async function connect(page) {
  await page.getByRole("button", { name: "Connecter Google Drive" }).click();
  // The waiting box shown, not only a code: after a refused login the last code is still
  // in the (hidden) box until the new one is drawn.
  await page.waitForFunction(() => !document.querySelector("#gd-wait").hidden && /^\S{4,}/.test(document.querySelector("#gd-code").textContent));
  return (await page.textContent("#gd-code")).trim();
}

test("the card connects Google Drive with the code shown, then says connected, and disconnects with a revoke", T, async () => {
  const { fake, tree, page } = await pi();
  const card = page.locator("#gdrive");
  assert.match(await card.innerText(), /Non connecté/);
  const code = await connect(page);
  assert.match(code, /^[A-Z0-9]{4}-[A-Z0-9]{4}$/);
  // What the volunteer needs on the phone: the words, the link (a new tab), the code
  // in large type, how long it is valid.
  const wait = await card.innerText();
  assert.match(wait, /Sur un téléphone : ouvrez le lien, saisissez le code, puis autorisez l'accès\./);
  const link = page.locator("#gd-link");
  assert.equal(await link.getAttribute("href"), "https://www.google.com/device");
  assert.equal(await link.getAttribute("target"), "_blank");
  assert.match(await link.getAttribute("rel"), /noopener/);
  assert.match(await page.textContent("#gd-left"), /Code valable encore (30 min 0|29 min \d+) s\./);
  const size = await page.$eval("#gd-code", e => parseFloat(getComputedStyle(e).fontSize));
  assert.ok(size >= 30, `the code is ${size}px`);
  await card.screenshot({ path: path.join(ARTIFACTS, "gdrive-connect.png") });

  // Approved on the phone: the page, polling, turns « Connecté ».
  await control(fake, "/_test/approve", { user_code: code });
  await page.waitForFunction(() => document.querySelector("#gd-badge").textContent === "Connecté", null, { timeout: 30_000 });
  assert.equal(await page.isHidden("#gd-wait"), true);
  assert.equal(await page.textContent("#gd-folder"), "neopro-test/club-page/");
  assert.match(await page.textContent("#gd-since"), /\d{4}/);
  assert.equal(await page.textContent("#gd-pending"), "0");
  assert.equal(await page.textContent("#gd-err"), "Aucune");
  // The space: one GET with ?quota=1 once connected (the fake's 15 Go, nothing used).
  await page.waitForFunction(() => /15 Go sur 15 Go/.test(document.querySelector("#gd-space").textContent));
  assert.match(await page.textContent("#gd-space"), /0 copie\(s\) de ce site/);
  const tok = path.join(tree.backups, "gdrive-token.json");
  assert.equal(fs.statSync(tok).mode & 0o777, 0o600);
  await card.screenshot({ path: path.join(ARTIFACTS, "gdrive-connected.png") });

  // A phone: the card fits the screen.
  await page.setViewportSize({ width: 390, height: 800 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "wider than a phone");
  await card.screenshot({ path: path.join(ARTIFACTS, "gdrive-phone.png") });
  await page.setViewportSize({ width: 1280, height: 900 });

  // « Déconnecter »: a confirm dialog with the revoke checkbox; cancel keeps it all.
  await page.getByRole("button", { name: "Déconnecter", exact: true }).click();
  const dlg = page.getByRole("dialog");
  await dlg.getByRole("heading", { name: "Déconnecter Google Drive ?" }).waitFor();
  await dlg.getByRole("button", { name: "Annuler" }).click();
  assert.ok(fs.existsSync(tok));
  await page.getByRole("button", { name: "Déconnecter", exact: true }).click();
  await dlg.getByLabel("Révoquer aussi l'accès chez Google (déconnecte tous les boîtiers de ce compte)").check();
  await dlg.getByRole("button", { name: "Déconnecter" }).click();
  await page.waitForFunction(() => document.querySelector("#gd-badge").textContent === "Non connecté");
  await page.getByRole("button", { name: "Connecter Google Drive" }).waitFor();
  assert.equal(fs.existsSync(tok), false);
  const revokes = (await control(fake, "/_test/requests")).filter(r => r.path === "/revoke");
  assert.equal(revokes.length, 1);
  assert.equal(revokes[0].status, 200);
  clean(page);
});

test("a refusal on Google's screen and an expired code are said in French words", T, async () => {
  const { fake, page } = await pi({ device_expires_in: 4 });
  // Refused.
  let code = await connect(page);
  await control(fake, "/_test/deny", { user_code: code });
  await page.waitForFunction(() => /Accès refusé sur l'écran de Google\./.test(document.querySelector("#gd-msg").textContent), null, { timeout: 30_000 });
  assert.equal(await page.isVisible("#gd-connect"), true);
  assert.equal(await page.isHidden("#gd-wait"), true);
  // Expired (the fake's codes last 4 s here): the countdown runs out, then the words.
  code = await connect(page);
  assert.equal(await page.isHidden("#gd-msg"), true);
  await page.waitForFunction(() => /Le code a expiré : recommencez\./.test(document.querySelector("#gd-msg").textContent), null, { timeout: 30_000 });
  assert.match(await page.textContent("#gd-badge"), /Non connecté/);
  clean(page);
});

test("without Google Drive configured the card is not shown", T, async () => {
  const tree = makeTree();
  const d = await startDaemon(tree);
  // The page asks (GET /api/gdrive?quota=1: no request to Google) and keeps the card hidden.
  const page = await open(d, { noWait: true, before: pg => { pg.asked = pg.waitForResponse(r => /\/api\/gdrive\?quota=1$/.test(r.url())); } });
  const asked = await page.asked;
  assert.equal(asked.status(), 200);
  assert.equal((await asked.json()).configured, false);
  await page.waitForFunction(() => /Mis à jour/.test(document.querySelector("#updated").textContent));
  assert.equal(await page.isHidden("#gdrive"), true);
  clean(page);
});
