#!/usr/bin/env python3
"""Generate a Pi-like Neopro tree for the benchmarks, in one process (no process per file).

usage: gentree.py ROOT NVIDEOS

ROOT/neopro/webapp/configuration.json   ~100 KB of JSON, like a real club's
ROOT/neopro/sync-agent/.env             ~1 KB
ROOT/site.conf                          ~1 KB
ROOT/neopro/videos/<category>/<sub>/clip-NNNNNN.<ext>
    NVIDEOS small files (1-4 KiB: the inventory only stats them), extensions mp4 mkv
    mov avi in lower case (the old script's `find -name` is case-sensitive, so both
    tools see the same set), 100 per folder, plus one .jpg thumbnail per 10 videos
    (not videos: both tools must skip them).

Deterministic (fixed seed), so both tools back up identical trees run after run.
"""
import json
import os
import random
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    root, n = sys.argv[1], int(sys.argv[2])
    rng = random.Random(20241218)
    neo = os.path.join(root, "neopro")
    for d in ("webapp", "sync-agent", "videos"):
        os.makedirs(os.path.join(neo, d), exist_ok=True)

    # configuration.json: about 100 KB, a club with categories, videos and sponsors.
    cats = []
    i = 0
    while len(json.dumps(cats)) < 100_000:
        cats.append({
            "id": f"cat-{i}",
            "name": f"Catégorie {i}",
            "videos": [{"name": f"Vidéo {i}-{j}", "path": f"videos/c{i}/clip-{j:06d}.mp4",
                        "type": "video/mp4", "duration": rng.randint(5, 600)} for j in range(20)],
        })
        i += 1
    conf = {"remote": {"title": "Neopro — Club de démonstration"}, "version": "2.4.1",
            "auth": {"password": "x" * 32}, "categories": cats}
    with open(os.path.join(neo, "webapp", "configuration.json"), "w", encoding="utf-8") as f:
        json.dump(conf, f, ensure_ascii=False, indent=2)

    env = "".join(f"SYNC_VAR_{k}={rng.getrandbits(128):032x}\n" for k in range(24))
    with open(os.path.join(neo, "sync-agent", ".env"), "w") as f:
        f.write("CENTRAL_SERVER_URL=https://central.example.org\nSITE_ID=club-demo\n" + env)
    site = "".join(f"SITE_KEY_{k}=value-{rng.getrandbits(96):024x}\n" for k in range(20))
    with open(os.path.join(root, "site.conf"), "w") as f:
        f.write("SITE_NAME=\"Club de démonstration\"\nSITE_ID=club-demo\n" + site)

    exts = ("mp4", "mp4", "mp4", "mkv", "mov", "avi")
    blob = rng.randbytes(4096)
    vids = os.path.join(neo, "videos")
    made_dir = None
    for k in range(n):
        d = os.path.join(vids, f"categorie-{k // 1000:02d}", f"sous-cat-{(k // 100) % 10}")
        if d != made_dir:
            os.makedirs(d, exist_ok=True)
            made_dir = d
        size = 1024 + (k * 7919) % 3073
        with open(os.path.join(d, f"clip-{k:06d}.{exts[k % len(exts)]}"), "wb") as f:
            f.write(blob[:size])
        if k % 10 == 0:
            with open(os.path.join(d, f"clip-{k:06d}.jpg"), "wb") as f:
                f.write(blob[:512])
    return 0


if __name__ == "__main__":
    sys.exit(main())
