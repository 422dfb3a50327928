// A large fleet in a bucket, for the fleet dashboard's browser test (fleet.test.mjs):
// SITES sites under PREFIX/, written through SeaweedFS's filer HTTP API on 16 keep-alive
// connections (as bench/lib/genfleet.py does for bench/fleet.sh). Deterministic: what
// each site holds follows from its index, and `fillFleet` returns what the dashboard
// must then show (the counts, the names, a site with gaps in its 30 nights).
//
// Each site is `club-<city>-<NNNNN>` (the cities below in turn) and holds 2 or 3 small
// archives dated from today (UTC) back, some with a gap, and a last-backup-status.json
// like a Pi's; one site in 50 failed its last run, one in 50 (another one) has not
// succeeded for 50 h, one in 20 of the others has copies pending. One more site,
// club-trous, holds 27 archives over its last 30 nights, today's included: the gaps are
// 4, 11 and 19 days ago.

import http from "node:http";

export const CITIES = ["annecy", "bordeaux", "brest", "dijon", "lille", "lyon", "marseille", "nantes",
  "nice", "paris", "reims", "rennes", "rouen", "toulon", "tours", "vannes"];
export const TROUS = "club-trous";
export const TROUS_GAPS = [4, 11, 19];

const DAY = 86400_000;
const iso = ms => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
const archive = (nowMs, daysAgo) => {
  const d = new Date(nowMs - daysAgo * DAY).toISOString();
  return `backup-${d.slice(0, 4)}${d.slice(5, 7)}${d.slice(8, 10)}-030000.tar.gz`;
};

function status(nowMs, kind) {
  const hours = kind === "stale" ? 50 : kind === "failed" ? 30 : 2;
  const last = iso(nowMs - hours * 3600_000);
  const ts = kind === "failed" ? iso(nowMs - 600_000) : last;
  const pending = kind === "pending" ? 2 : 0;
  return JSON.stringify({
    timestamp: ts, date: ts.slice(0, 10), success: kind !== "failed", archive: archive(nowMs, 0),
    size: "1.2 MB", size_bytes: 1258291, backups_count: 3, retention_days: 7, duration_ms: 812,
    warnings: [], error: kind === "failed" ? "No space left on device (os error 28)" : null,
    last_success: last,
    offsite: { pending, last_upload: last, error: pending ? "PUT s3://…: cannot connect (network unreachable)" : null },
  });
}

/** The site of index `i` (0-based): its name, its state, the days ago of its archives. */
export function site(i) {
  const name = `club-${CITIES[i % CITIES.length]}-${String(i).padStart(5, "0")}`;
  const kind = i % 50 === 7 ? "failed" : i % 50 === 13 ? "stale" : i % 20 === 3 ? "pending" : "ok";
  // Stale: nothing for the last two nights. Otherwise today's, and one site in three a gap.
  const days = kind === "stale" ? [2, 3] : i % 3 === 0 ? [0, 2, 3] : i % 3 === 1 ? [0, 1] : [0, 1, 2];
  return { name, kind, days };
}

/** Writes `sites` sites (and club-trous) under `prefix`; returns the expected counts. */
export async function fillFleet(filer, bucket, prefix, sites, nowMs = Date.now()) {
  const u = new URL(filer);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const jobs = [];
  const counts = { total: sites + 1, failed: 0, stale: 0, pending: 0, ok: 0 };
  const add = (name, days, kind) => {
    for (const d of days) jobs.push([`${name}/${archive(nowMs, d)}`, Buffer.alloc(600 + d * 10, 1)]);
    jobs.push([`${name}/last-backup-status.json`, Buffer.from(status(nowMs, kind))]);
    counts[kind]++;
  };
  for (let i = 0; i < sites; i++) {
    const s = site(i);
    add(s.name, s.days, s.kind);
  }
  add(TROUS, Array.from({ length: 30 }, (_, k) => k).filter(d => !TROUS_GAPS.includes(d)), "ok");

  const put = ([key, body]) => new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, method: "PUT", agent,
      path: `/buckets/${bucket}/${prefix}/${key}`,
      headers: { "Content-Type": "application/octet-stream", "Content-Length": body.length },
    }, res => {
      res.resume();
      res.on("end", () => res.statusCode >= 200 && res.statusCode < 300
        ? resolve() : reject(new Error(`filer PUT ${key}: HTTP ${res.statusCode}`)));
    });
    req.setTimeout(60_000, () => req.destroy(new Error(`filer PUT ${key}: no answer in 60 s`)));
    req.on("error", reject);
    req.end(body);
  });
  // 16 workers, each on its own keep-alive connection of the agent; a failed PUT is
  // tried twice more (a connection the filer closed), then fails the whole fill.
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      for (let attempt = 0; ; attempt++) {
        try { await put(job); break; } catch (e) { if (attempt === 2) throw e; }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: 16 }, worker));
  } finally {
    agent.destroy();
  }
  return { counts, objects: jobs.length };
}

// Alone: node genfleet.mjs FILER BUCKET PREFIX SITES (to measure or to look at the page).
if (import.meta.url === `file://${process.argv[1]}`) {
  const [filer, bucket, prefix, n] = process.argv.slice(2);
  const t = Date.now();
  const r = await fillFleet(filer, bucket, prefix, Number(n));
  console.error(`genfleet: ${r.objects} objects in ${Date.now() - t} ms`, r.counts);
}
