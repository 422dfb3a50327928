#!/usr/bin/env bash
# The SMTP server of the email tests (src/smtp/server_tests.rs runs tests/smtp/server.py): aiosmtpd
# from PyPI into .xtools/smtp-venv. Idempotent: a no-op (a fraction of a second) when
# the pinned versions are there. Needs python3 with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

XTOOLS=${XTOOLS:-.xtools}
VENV=$XTOOLS/smtp-venv
# Pinned, with their dependencies, so that every machine tests against the same server.
PINS="aiosmtpd==1.4.6 atpublic==9.0.0 attrs==26.1.0"

if [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$PINS" ] && "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    exit 0
fi
printf 'smtp-venv: installing %s into %s\n' "$PINS" "$VENV" >&2
mkdir -p "$XTOOLS"
[ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/pip" install -q --disable-pip-version-check $PINS >&2
echo "$PINS" >"$VENV/.pins"
