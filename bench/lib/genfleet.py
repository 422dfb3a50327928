#!/usr/bin/env python3
"""Fill a bucket with a fleet for bench/fleet.sh, through the SeaweedFS filer's HTTP API.

usage: genfleet.py FILER_URL BUCKET PREFIX SITES ARCHIVES
       genfleet.py index FILER_URL BUCKET PREFIX SITES
       genfleet.py change FILER_URL BUCKET PREFIX SITES EVERY

`index` copies each site's status to the fleet's index (PREFIX/fleet-index/status/
SITE.json, the same bytes, as an upgraded Pi does; docs/format.md, Fleet); marker
PREFIX/.genfleet-index. `change` plays one night for every EVERY-th site: a new archive
named for this second and a new status, in the site's folder and in the index, as a
Pi's round writes them.

For each of SITES sites (site-0001 …): ARCHIVES copies
PREFIX/site-NNNN/backup-YYYYMMDD-030000.tar.gz, one a day back from today (small
objects, 0.5 to 2 KiB: the dashboard only lists them), and a last-backup-status.json
like a Pi's. About 2 % of the sites failed their last run, 3 % stopped two days ago,
5 % have copies pending; the rest are fine. Deterministic (fixed seed).

A marker PREFIX/.genfleet holds the parameters: when it matches, nothing is
re-uploaded. Uploads run on 16 keep-alive connections.
"""
import datetime as dt
import http.client
import json
import random
import sys
import threading
import urllib.parse


def status(site_index: int, now: dt.datetime, archives: int, rng: random.Random) -> bytes:
    kind = rng.random()
    stamp = (now - dt.timedelta(minutes=rng.randint(5, 600))).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    st = {
        "timestamp": stamp, "date": stamp[:10], "success": True,
        "archive": "backup-%s-030000.tar.gz" % now.strftime("%Y%m%d"),
        "size": "1.2 MB", "size_bytes": 1258291, "backups_count": 7,
        "retention_days": 7, "duration_ms": 812, "warnings": [], "error": None,
        "last_success": stamp,
        "offsite": {"pending": 0, "last_upload": stamp, "error": None},
    }
    if kind < 0.02:
        st["success"] = False
        st["error"] = "No space left on device (os error 28)"
        st["last_success"] = (now - dt.timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    elif kind < 0.05:
        old = (now - dt.timedelta(hours=50)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        st["timestamp"] = st["last_success"] = old
    elif kind < 0.10:
        st["offsite"] = {"pending": rng.randint(1, 4), "last_upload": stamp,
                         "error": "PUT s3://…: cannot connect (network unreachable)"}
    return json.dumps(st).encode()


def put_all(host: str, port: int, jobs, threads: int = 16) -> list:
    """PUTs (path, bytes or a size of zero bytes) on keep-alive connections, each tried
    three times, with a progress line every 5,000; the errors."""
    lock = threading.Lock()
    errors = []
    done = [0]

    def work(part):
        c = http.client.HTTPConnection(host, port, timeout=60)
        for path, data in part:
            payload = data if isinstance(data, bytes) else b"\0" * data
            for attempt in range(3):
                try:
                    c.request("PUT", path, body=payload,
                              headers={"Content-Type": "application/octet-stream"})
                    r = c.getresponse()
                    r.read()
                    if 200 <= r.status < 300:
                        break
                    raise OSError(f"HTTP {r.status}")
                except (OSError, http.client.HTTPException) as e:
                    c.close()
                    c = http.client.HTTPConnection(host, port, timeout=60)
                    if attempt == 2:
                        with lock:
                            errors.append(f"{path}: {e}")
            with lock:
                done[0] += 1
                if done[0] % 5000 == 0:
                    print(f"genfleet: {done[0]}/{len(jobs)} objects", file=sys.stderr)

    ts = [threading.Thread(target=work, args=(jobs[k::threads],)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def get_all(host: str, port: int, paths, threads: int = 16) -> dict:
    """GETs each path on keep-alive connections: {path: bytes} (absent on error)."""
    lock = threading.Lock()
    out = {}

    def work(part):
        c = http.client.HTTPConnection(host, port, timeout=60)
        for path in part:
            c.request("GET", path)
            r = c.getresponse()
            body = r.read()
            if r.status == 200:
                with lock:
                    out[path] = body

    ts = [threading.Thread(target=work, args=(paths[k::threads],)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def index(filer: str, bucket: str, prefix: str, sites: int) -> int:
    u = urllib.parse.urlsplit(filer)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    base = f"/buckets/{bucket}/{prefix.strip('/')}"
    marker = f"{base}/.genfleet-index"
    wanted = f"sites={sites}\n".encode()
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", marker)
    r = c.getresponse()
    if r.read() == wanted and r.status == 200:
        print(f"genfleet: the index of {prefix}/ is there", file=sys.stderr)
        return 0
    names = [f"site-{i:04d}" for i in range(1, sites + 1)]
    got = get_all(host, port, [f"{base}/{n}/last-backup-status.json" for n in names])
    jobs = [(f"{base}/fleet-index/status/{n}.json", got[f"{base}/{n}/last-backup-status.json"])
            for n in names if f"{base}/{n}/last-backup-status.json" in got]
    errors = put_all(host, port, jobs)
    if errors or len(jobs) != sites:
        print(f"genfleet: index: {len(jobs)} statuses of {sites}, {len(errors)} error(s)", file=sys.stderr)
        return 1
    put_all(host, port, [(marker, wanted)], 1)
    print(f"genfleet: {len(jobs)} index entries under {prefix}/fleet-index/", file=sys.stderr)
    return 0


def change(filer: str, bucket: str, prefix: str, sites: int, every: int) -> int:
    u = urllib.parse.urlsplit(filer)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    base = f"/buckets/{bucket}/{prefix.strip('/')}"
    now = dt.datetime.now(dt.timezone.utc)
    name = "backup-%s.tar.gz" % now.strftime("%Y%m%d-%H%M%S")
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    jobs = []
    for i in range(every, sites + 1, every):
        site = f"site-{i:04d}"
        st = json.dumps({
            "timestamp": stamp, "date": stamp[:10], "success": True, "archive": name,
            "size": "1.2 MB", "size_bytes": 1258291, "backups_count": 7,
            "retention_days": 7, "duration_ms": 790, "warnings": [], "error": None,
            "last_success": stamp, "offsite": {"pending": 0, "last_upload": stamp, "error": None},
        }).encode()
        jobs.append((f"{base}/{site}/{name}", b"\0" * 1024))
        jobs.append((f"{base}/{site}/last-backup-status.json", st))
        jobs.append((f"{base}/fleet-index/status/{site}.json", st))
    errors = put_all(host, port, jobs)
    if errors:
        print(f"genfleet: change: {len(errors)} error(s), e.g. {errors[0]}", file=sys.stderr)
        return 1
    print(f"{len(jobs) // 3} {name}")
    return 0


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "index":
        return index(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    if len(sys.argv) == 7 and sys.argv[1] == "change":
        return change(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    filer, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3].strip("/")
    sites, archives = int(sys.argv[4]), int(sys.argv[5])
    u = urllib.parse.urlsplit(filer)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    base = f"/buckets/{bucket}/{prefix}"
    marker = f"{base}/.genfleet"
    wanted = f"sites={sites} archives={archives}\n".encode()

    def conn() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(host, port, timeout=60)

    c = conn()
    c.request("GET", marker)
    r = c.getresponse()
    body = r.read()
    if r.status == 200 and body == wanted:
        print(f"genfleet: {prefix}/ already holds {sites} sites x {archives} archives", file=sys.stderr)
        return 0

    rng = random.Random(20241218)
    now = dt.datetime.now(dt.timezone.utc)
    jobs = []
    for i in range(1, sites + 1):
        site = f"site-{i:04d}"
        for d in range(archives):
            day = (now - dt.timedelta(days=d)).strftime("%Y%m%d")
            jobs.append((f"{base}/{site}/backup-{day}-030000.tar.gz", rng.randint(512, 2048)))
        jobs.append((f"{base}/{site}/last-backup-status.json", status(i, now, archives, rng)))
    errors = put_all(host, port, jobs)
    if errors:
        print(f"genfleet: {len(errors)} upload(s) failed, e.g. {errors[0]}", file=sys.stderr)
        return 1
    c = conn()
    c.request("PUT", marker, body=wanted)
    r = c.getresponse()
    r.read()
    if not 200 <= r.status < 300:
        print(f"genfleet: cannot write the marker: HTTP {r.status}", file=sys.stderr)
        return 1
    print(f"genfleet: {len(jobs)} objects under {prefix}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
