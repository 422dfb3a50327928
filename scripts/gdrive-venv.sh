#!/usr/bin/env bash
# Google's own Python client for the Drive fake's fidelity check (tests/gdrive/, mk/gdrive.mk):
# google-api-python-client (it ships Drive v3's discovery document) and google-auth from
# PyPI into .xtools/gdrive-venv, next to the other venvs of the tests. Idempotent: a no-op
# (a fraction of a second) when the pinned versions are there. Needs python3 with venv
# (Debian: python3-venv, in scripts/test-deps.sh's check group).
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
VENV=$XTOOLS/gdrive-venv
# Pinned, with all their dependencies, so that every machine checks the fake against the
# same client and the same drive.v3.json.
PINS="google-api-python-client==2.202.0 google-auth==2.63.1 google-auth-httplib2==0.4.4
google-api-core==2.44.0 googleapis-common-protos==1.76.0 proto-plus==1.29.0
protobuf==7.36.2 httplib2==0.32.1 pyparsing==3.3.3 uritemplate==4.2.0 requests==2.34.2
urllib3==2.8.0 idna==3.21 charset-normalizer==3.5.3 certifi==2026.10.19.post1
pyasn1==0.6.5 pyasn1_modules==0.4.2 cryptography==51.0.1 cffi==2.1.1 pycparser==3.12
opentelemetry-api==1.45.3 typing_extensions==4.16.0"
PINS=$(echo $PINS)

if [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$PINS" ] && "$VENV/bin/python" -c 'import googleapiclient, google.oauth2' 2>/dev/null; then
    exit 0
fi
printf 'gdrive-venv: installing google-api-python-client and google-auth (pinned) into %s\n' "$VENV" >&2
mkdir -p "$XTOOLS"
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2
echo "$PINS" >"$VENV/.pins"
