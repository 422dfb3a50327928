#!/usr/bin/env python3
"""A real SMTP server for the tests of src/smtp.rs: aiosmtpd (PyPI), on loopback.

    server.py --dir OUT --mode starttls|implicit|plain [--cert PEM --key PEM]
              [--user U --password P] [--refuse-auth] [--mechanisms PLAIN,LOGIN]

It binds 127.0.0.1 on a port the kernel picks (port 0), then writes that port to
OUT/port (atomically, once it listens) and prints "PORT n".

  starttls  plain TCP that offers STARTTLS and requires it before AUTH and MAIL
  implicit  TLS from the first byte (smtps)
  plain     no TLS at all (AUTH allowed in clear: the loopback case)

With --user, AUTH is required before MAIL and only those credentials pass;
--refuse-auth refuses every AUTH (535); --mechanisms limits what EHLO offers.

Each message is written before the server answers 250 to the final dot:
OUT/mail-N.eml is the DATA as received (the server has already removed the dot
stuffing), OUT/mail-N.json the envelope, whether the session was TLS, the AUTH
mechanism and login used, and the message as Python's email package reads it
(decoded subject, decoded body text, headers, parsing defects). OUT/auth.log gets one
line per AUTH attempt: "MECHANISM login ok|refused".

It stops when its standard input closes (the test that started it is gone) or on
SIGTERM/SIGINT.
"""

import argparse
import asyncio
import email
import email.policy
import email.utils
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Handler:
    def __init__(self, out):
        self.out = out
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.out, "mail-%d" % self.count)
        raw = envelope.original_content or b""
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        try:
            body = msg.get_content() if not msg.is_multipart() else None
        except Exception as e:  # a broken body is a finding, not a server crash
            body = None
            print("body not decodable: %r" % e, file=sys.stderr)
        date = msg.get("Date")
        try:
            date_epoch = int(email.utils.parsedate_to_datetime(str(date)).timestamp()) if date else None
        except Exception:
            date_epoch = None
        mech, login = (session.auth_data or (None, None))
        info = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "mail_options": envelope.mail_options,
            "tls": ssl_object is not None,
            "tls_version": ssl_object.version() if ssl_object else "",
            "auth_mechanism": mech or "",
            "auth_login": login or "",
            "subject": str(msg.get("Subject", "")),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "date": str(date or ""),
            "date_epoch": date_epoch if date_epoch is not None else -1,
            "message_id": str(msg.get("Message-ID", "")),
            "mime_version": str(msg.get("MIME-Version", "")),
            "content_type": msg.get_content_type(),
            "charset": str(msg.get_content_charset() or ""),
            "transfer_encoding": str(msg.get("Content-Transfer-Encoding", "")),
            "body": body.replace("\r\n", "\n") if body is not None else "",
            "defects": [type(d).__name__ for d in msg.defects]
            + [type(d).__name__ for p in msg.walk() for d in p.defects if p is not msg],
        }
        write_atomic(base + ".eml", raw)
        write_atomic(base + ".json", json.dumps(info, ensure_ascii=False).encode("utf-8"))
        return "250 OK message %d" % self.count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--mode", choices=["starttls", "implicit", "plain"], required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--refuse-auth", action="store_true")
    p.add_argument("--mechanisms", default="PLAIN,LOGIN")
    a = p.parse_args()
    # aiosmtpd warns that AUTH without TLS is unsafe (plain mode exists for that case).
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    os.makedirs(a.dir, exist_ok=True)

    ctx = None
    if a.mode != "plain":
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)

    auth_log = open(os.path.join(a.dir, "auth.log"), "a", buffering=1)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            not a.refuse_auth
            and isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", "replace") == a.user
            and auth_data.password.decode("utf-8", "replace") == a.password
        )
        login = auth_data.login.decode("utf-8", "replace") if isinstance(auth_data, LoginPassword) else "?"
        auth_log.write("%s %s %s\n" % (mechanism, login, "ok" if ok else "refused"))
        if ok:
            return AuthResult(success=True, auth_data=(mechanism, login))
        # handled=False: aiosmtpd answers 535 itself.
        return AuthResult(success=False, handled=False)

    offered = {m.strip().upper() for m in a.mechanisms.split(",") if m.strip()}
    exclude = [m for m in ("PLAIN", "LOGIN") if m not in offered]
    handler = Handler(a.dir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(
            handler,
            hostname="smtp.test",
            tls_context=ctx if a.mode == "starttls" else None,
            require_starttls=a.mode == "starttls",
            # aiosmtpd only knows of TLS it negotiated itself (STARTTLS): in implicit
            # mode the whole connection is TLS, in plain mode AUTH in clear is the point.
            auth_require_tls=a.mode == "starttls",
            auth_required=a.user is not None,
            auth_exclude_mechanism=exclude,
            authenticator=authenticator if a.user is not None else None,
            loop=loop,
        )

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = loop.run_until_complete(
        loop.create_server(factory, sock=sock, ssl=ctx if a.mode == "implicit" else None)
    )

    stop = loop.create_future()

    def request_stop(*_):
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except Exception:
            pass
        request_stop()

    threading.Thread(target=watch_stdin, daemon=True).start()

    write_atomic(os.path.join(a.dir, "port"), str(port).encode())
    print("PORT %d" % port, flush=True)
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())


if __name__ == "__main__":
    main()
