// Field safety on the backups page (`GET /`, src/serve/page.html) in Debian's Chromium,
// driven by playwright-core (the harness in lib.mjs, shared with ui.test.mjs): archives
// of the old auto-backup.sh marked as such, and a clock that was wrong (an archive and a
// success dated 2099) never shown as "À jour" but pointed out (docs/format.md, The
// schedule). NEOPRO_BIN and CHROMIUM: see lib.mjs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { setup, ROOT, T, makeTree, runBackup, archives, startDaemon, open, clean, waitRows, row } from "./lib.mjs";

setup();

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
