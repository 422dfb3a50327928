#!/bin/bash
# `make bench` (after `cargo build --release`): every benchmark, one after the other.
# Each prints its table and writes target/bench/<name>-results.md. A missed goal is
# reported, not fatal (BENCH_STRICT=1 makes it fatal); an actual error fails.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench

status=0

# 1. The backup engine: `neopro-backup run` vs the old bash script (bench/old-backup.sh).
bash bench/engine.sh || status=1

# 2. The HTTP API vs the old admin server: bench/api.sh, run here once it exists.
if [ -f bench/api.sh ]; then
    bash bench/api.sh || status=1
fi

# 3. Fair connections and the health lane, before and after the daemon hardening.
bash bench/daemon.sh || status=1
# 4. Videos offsite against restic, INCLUDE_VIDEOS against tar (bench/videos.sh).
bash bench/videos.sh || status=1
# 5. Recovery from the bucket against curl fetching the same objects (bench/recover.sh).
bash bench/recover.sh || status=1
# 6. Google Drive: the upload to the fake Google against one curl PUT (bench/gdrive.sh).
bash bench/gdrive.sh || status=1

exit $status
