// Recovery from the bucket on the backups page (src/serve/page.html, "Copies distantes";
// CONTRACT §7) in Debian's Chromium, against a real S3 server: SeaweedFS on loopback
// (scripts/seaweedfs.sh). A site makes its backups with the real binary (copies and
// videos sent to the bucket); a blank Pi (a freshly flashed card: no NEOPRO_DIR, no
// BACKUP_DIR) then serves the page, which offers the recovery first, and recovers it.
// The Pi reads the bucket through a relay of this file that answers slowly, so that the
// progress is seen while the big video comes down.
//
//   NEOPRO_TEST_S3, NEOPRO_TEST_FILER  SeaweedFS's S3 and filer URLs (required)
//   NEOPRO_BIN, CHROMIUM  the binary and the browser (the harness in lib.mjs)
// Screenshots go to tests/artifacts/ (ignored by git).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setup, onCleanup, newPage, watchProblems, startDaemon, BIN, ARTIFACTS, T } from "./lib.mjs";

const S3 = (process.env.NEOPRO_TEST_S3 || "").replace(/\/$/, "");
const FILER = (process.env.NEOPRO_TEST_FILER || "").replace(/\/$/, "");
const BUCKET = "neopro-test";
// The identity of scripts/seaweedfs.sh.
const ACCESS_KEY = "NEOPROTESTKEY";
const SECRET_KEY = "neopro-test-secret-0123456789";
const TOKEN = "recover-browser-token-0123456789";
// Three of the ranges the daemon reads a video by (RANGE_CHUNK, 8 MiB): its progress
// moves while it comes down.
const BIG = 24 * 1024 * 1024;

setup({
  check: async () => {
    assert.ok(S3 && FILER, "set NEOPRO_TEST_S3 and NEOPRO_TEST_FILER (SeaweedFS: scripts/seaweedfs.sh start)");
    const r = await fetch(FILER + "/", { signal: AbortSignal.timeout(5000) }).catch(e => ({ status: 0, e }));
    assert.ok(r.status > 0, `SeaweedFS's filer does not answer at ${FILER}: scripts/seaweedfs.sh start`);
  },
});

async function put(key, body) {
  const r = await fetch(`${FILER}/buckets/${BUCKET}/${key}`, { method: "PUT", body });
  assert.ok(r.ok, `filer PUT ${key}: HTTP ${r.status}`);
}

/** A TCP relay to S3 that lets `rate` bytes a second through towards the client. */
function slowRelay(rate) {
  const to = new URL(S3), open = new Set();
  const server = net.createServer(client => {
    const up = net.connect(Number(to.port), to.hostname);
    open.add(client); open.add(up);
    client.pipe(up);
    let budget = 0, queue = [], timer = null;
    const drain = () => {
      budget = Math.floor(rate / 10);
      while (queue.length && budget > 0) {
        let b = queue.shift();
        if (b.length > budget) { queue.unshift(b.subarray(budget)); b = b.subarray(0, budget); }
        budget -= b.length;
        client.write(b);
      }
      if (!queue.length && up.readableEnded) client.end();
    };
    timer = setInterval(drain, 100);
    up.on("data", b => queue.push(b));
    up.on("end", () => { if (!queue.length) client.end(); });
    const stop = () => { clearInterval(timer); up.destroy(); client.destroy(); open.delete(up); open.delete(client); };
    up.on("error", stop); client.on("error", stop); client.on("close", stop);
  });
  onCleanup(() => new Promise(res => { server.close(res); for (const s of open) s.destroy(); }));
  return new Promise(res => server.listen(0, "127.0.0.1", () => res("http://127.0.0.1:" + server.address().port)));
}

function tree(name, files) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "neopro-recover-ui-" + name + "-"));
  for (const [rel, data] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data);
  }
  fs.mkdirSync(path.join(root, "etc"), { recursive: true });
  fs.writeFileSync(path.join(root, "etc/backup.conf"), ""); // the host's never leaks in
  onCleanup(() => fs.rmSync(root, { recursive: true, force: true }));
  return {
    root, conf: path.join(root, "etc/backup.conf"), neopro: path.join(root, "neopro"),
    env: {
      NEOPRO_DIR: path.join(root, "neopro"), BACKUP_DIR: path.join(root, "backups"),
      SITE_CONF: path.join(root, "etc/site.conf"), TZ: "UTC", LANG: "C.UTF-8",
    },
  };
}

test("a blank Pi's page offers the bucket's copies first and recovers one with its progress", T, async () => {
  const prefix = `r${process.pid}-${Date.now()}`, site = "club-page";
  const s3 = { S3_ENDPOINT: S3, S3_BUCKET: BUCKET, S3_ACCESS_KEY: ACCESS_KEY, S3_SECRET_KEY: SECRET_KEY, S3_PREFIX: prefix, SITE_ID: site, VIDEOS_OFFSITE: "true" };
  const conf = '{"club": "Stade équipe", "recovered": true}\n';
  const big = crypto.randomBytes(BIG);
  const club = tree("site", {
    "neopro/webapp/configuration.json": conf,
    "neopro/sync-agent/.env": "SYNC_SERVER=https://sync.example.org\n",
    "neopro/videos/promo.mp4": Buffer.alloc(3000, 7),
    "neopro/videos/Match/finale.mp4": big,
    "etc/site.conf": 'SITE_NAME="Club Page"\n',
  });
  // Written first, through the filer: it makes the bucket of a freshly started SeaweedFS.
  await put(`${prefix}/bucket-made`, "");
  execFileSync(BIN, ["--config", club.conf, "run"], { env: { ...club.env, ...s3 }, stdio: "pipe" });
  // An older copy, encrypted: recovered over SSH only. Put after the site's own run (a
  // site's folder holding copies it did not send would hold its copies back).
  const aged = "backup-20240101-030000.tar.gz.age";
  await put(`${prefix}/${site}/${aged}`, "age-encryption.org/v1\n-> X25519 not a real one\n");
  const newest = fs.readdirSync(path.join(club.root, "backups")).find(n => /^backup-\d{8}-\d{6}\.tar\.gz$/.test(n));
  assert.ok(newest, "the site made no archive");
  const sent = await fetch(`${FILER}/buckets/${BUCKET}/${prefix}/${site}/${newest}`);
  assert.equal(sent.status, 200, `the site's run did not send ${newest}`);

  const pi = tree("pi", {});
  const relay = await slowRelay(4 * 1024 * 1024); // 6 s for the big video
  const d = await startDaemon(pi, { ...s3, S3_ENDPOINT: relay, API_TOKEN: TOKEN });
  const page = await newPage({ viewport: { width: 1280, height: 900 } });
  page.problems = watchProblems(page);
  await page.addInitScript(t => sessionStorage.setItem("neopro-backup-token", t), TOKEN);
  await page.goto(d.url + "/");

  // First, at the top: the bucket holds this site's backups.
  const banner = page.locator("#blank");
  await banner.waitFor();
  assert.ok(await page.evaluate(() => document.querySelector("#blank").compareDocumentPosition(document.querySelector("#state")) & Node.DOCUMENT_POSITION_FOLLOWING), "the banner is not above the status");
  assert.match(await banner.innerText(), new RegExp(`2 copie\\(s\\) du site ${site}`));
  // The section lists them, newest first, the encrypted one marked.
  const rows = page.locator("#rrows tr");
  await page.waitForFunction(() => document.querySelectorAll("#rrows tr").length === 2);
  assert.deepEqual(await rows.evaluateAll(trs => trs.map(tr => tr.dataset.name)), [newest, aged]);
  assert.match(await rows.nth(1).innerText(), /chiffrée/);
  assert.match(await rows.nth(0).innerText(), /\d+ o|Ko/);
  // An encrypted copy: the SSH command, nothing started.
  await rows.nth(1).getByRole("button", { name: `Récupérer ${aged}` }).click();
  const dlg = page.getByRole("dialog");
  await dlg.getByText(`sudo neopro-backup recover ${aged} --identity FICHIER`).waitFor();
  await dlg.getByRole("button", { name: "Fermer" }).click();

  // The newest from the banner: the dry run first, nothing written.
  await page.getByRole("button", { name: "Récupérer la plus récente…" }).click();
  await dlg.getByRole("heading", { name: "Récupérer cette copie ?" }).waitFor();
  const dry = await dlg.innerText();
  assert.match(dry, new RegExp(newest.replace(/\./g, "\\.") + " sera téléchargée"));
  assert.match(dry, /3 fichier\(s\) seraient restaurés/);
  assert.match(dry, /Dossiers qui seront créés/);
  assert.match(dry, /2 vidéo\(s\) seraient récupérées/);
  assert.equal(fs.existsSync(pi.neopro), false, "the dry run wrote");
  await page.screenshot({ path: path.join(ARTIFACTS, "recover-dry.png") });
  await dlg.getByRole("button", { name: "Récupérer", exact: true }).click();

  // The job: its progress while the big video comes down, then the result.
  await page.waitForFunction(() => {
    const bar = document.querySelector("#job-bar");
    return /vidéos/.test(document.querySelector("#job-text").textContent) && bar.value > 0 && bar.value < bar.max;
  });
  assert.match(await page.textContent("#job-num"), /sur 2/);
  assert.equal(await page.getByRole("button", { name: `Récupérer ${newest}` }).isDisabled(), true);
  await page.screenshot({ path: path.join(ARTIFACTS, "recover-progress.png") });
  await dlg.getByRole("heading", { name: "✓ Récupération terminée" }).waitFor({ timeout: 60_000 });
  const done = await dlg.innerText();
  assert.match(done, /Restauration terminée : 3 fichier\(s\) restauré\(s\)/);
  assert.match(done, /Vidéos restaurées : 2 récupérée\(s\)/);
  await page.screenshot({ path: path.join(ARTIFACTS, "recover-done.png") });
  await dlg.getByRole("button", { name: "Fermer" }).click();

  // On disk: the configuration, the videos, the archive.
  assert.equal(fs.readFileSync(path.join(pi.neopro, "webapp/configuration.json"), "utf8"), conf);
  assert.ok(fs.readFileSync(path.join(pi.neopro, "videos/Match/finale.mp4")).equals(big), "the big video differs");
  assert.ok(fs.existsSync(path.join(pi.env.BACKUP_DIR, newest)));
  // The page now lists the local archive, and the banner is gone.
  await page.waitForFunction(n => document.querySelector(`#rows tr[data-name="${n}"]`), newest);
  await page.locator("#blank").waitFor({ state: "hidden" });
  // Phone width: the bucket's list fits the screen.
  await page.setViewportSize({ width: 390, height: 800 });
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "wider than a phone");
  await page.locator("#remote").screenshot({ path: path.join(ARTIFACTS, "recover-phone.png") });
  assert.deepEqual(page.problems, []);
});
