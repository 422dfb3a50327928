# The SMTP tests (unit tests of src/smtp.rs, run by test-rust) talk to a real SMTP
# server: tests/smtp/server.py, aiosmtpd from PyPI in .xtools/smtp-venv. Without it
# they are skipped with a message, and fail under CI=true. Included by the top Makefile.

.PHONY: smtp-venv
smtp-venv:
	bash scripts/smtp-venv.sh

test-rust: smtp-venv
