#!/usr/bin/env bash
# make test-gdrive-fake: proves that the Google Drive fake of the tests
# (tests/gdrive/fake_google.py) answers as Google does, with Google's own client.
#   1. fake_wire.py (standard library only): what Google's client never sends but our
#      client does or may (streamed chunks with `bytes a-b/*`, a chunk not a multiple of
#      256 KiB, `bytes */*`, expired sessions, 416, escapes in q, the faults)
#   2. check_requests.py --self-test: the request checker refuses bad requests
#   3. fidelity.py: google-api-python-client + google-auth against a fresh fake (started
#      and stopped by fidelity.py itself, on a free port); its request log is kept in
#      target/gdrive/fidelity-requests.json
#   4. check_requests.py on that log: every request the official client made matches
#      drive.v3.json and the OAuth endpoints of the spec
# The client comes from PyPI (scripts/gdrive-venv.sh). When it cannot be installed the
# check cannot run: said loudly, and a failure under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${XTOOLS:-.xtools}/gdrive-venv
OUT=target/gdrive
cannot_run() {
    echo "test-gdrive-fake: CANNOT RUN: $*" >&2
    if [ "${CI:-}" = true ]; then exit 1; fi
    echo "test-gdrive-fake: fidelity check SKIPPED (a failure under CI=true)" >&2
    exit 0
}

command -v python3 >/dev/null || cannot_run "no python3"
start=$(date +%s%N)
python3 tests/gdrive/fake_wire.py
bash scripts/gdrive-venv.sh || cannot_run "google-api-python-client could not be installed from PyPI (scripts/gdrive-venv.sh)"
py=$VENV/bin/python
mkdir -p "$OUT"
"$py" tests/gdrive/check_requests.py --self-test
"$py" tests/gdrive/fidelity.py --log "$OUT/fidelity-requests.json"
"$py" tests/gdrive/check_requests.py "$OUT/fidelity-requests.json"
echo "test-gdrive-fake: passed in $((($(date +%s%N) - start) / 1000000)) ms"
