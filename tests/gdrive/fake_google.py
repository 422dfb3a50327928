#!/usr/bin/env python3
"""A local stand-in for Google Drive v3 and Google's OAuth endpoints, for the tests.

    fake_google.py [--port 0] [--exit-on-eof]

Python 3.11 standard library only. Binds 127.0.0.1 (port 0: the system picks), then
prints one line `fake-google listening on http://127.0.0.1:PORT` on stdout and flushes.
Both roots of the client (the Drive api root and the OAuth root) are that base URL.
With --exit-on-eof it stops when its standard input closes (the test that started it
is gone); it always stops on SIGTERM/SIGINT.

What it speaks is the wire of /work/gdrive-spec.md (tests/gdrive/README.md): the device
flow, the token endpoint (device grant, refresh grant), revoke; files.list (q parsed:
and/or/not/parentheses, name/mimeType/trashed comparisons, 'X' in parents), files.create
(metadata only), files.get (metadata, alt=media with Range), files.update (metadata),
files.delete, resumable uploads (POST for a new file, PATCH to replace a file's content
keeping its ID; PUT chunks, status queries), about.get. Errors have Google's shapes.
Control endpoints under /_test/ (fault injection, approval of device codes, config,
quota, the request log, the files) are described in tests/gdrive/README.md.

Everything lives in memory; a request body over 300 MiB and an upload over 300 MiB
are refused (413).
"""

import argparse
import base64
import hashlib
import itertools
import json
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 300 * 1024 * 1024
CHUNK_UNIT = 256 * 1024
FOLDER_MIME = "application/vnd.google-apps.folder"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DRIVE_SCOPES = {
    "https://www.googleapis.com/auth/drive",
    "https://www.googleapis.com/auth/drive.file",
    "https://www.googleapis.com/auth/drive.appdata",
    "https://www.googleapis.com/auth/drive.metadata.readonly",
    "https://www.googleapis.com/auth/drive.readonly",
}
DEFAULT_LIMIT = 16106127360  # 15 GiB, a free account
ROOT_ID = "0AFakeRootFolderIdUk9PVA"

FAULT_OPS = {
    "device_code", "token", "refresh", "list", "create_folder", "metadata", "download",
    "delete", "upload_start", "upload_chunk", "upload_query", "about", "update",
}
OAUTH_ERRORS = {  # error -> (status, error_description), as Google answers them
    "authorization_pending": (428, "Precondition Required"),
    "slow_down": (403, "Forbidden"),
    "access_denied": (403, "Forbidden"),
    "expired_token": (400, "Bad Request"),
    "invalid_grant": (400, "Token has been expired or revoked."),
}
LOGGED_HEADERS = ("content-range", "range", "content-type", "x-upload-content-type",
                  "x-upload-content-length", "content-length")


_LAST_TIME = [None]
_TIME_LOCK = threading.Lock()


def now_rfc3339():
    """The time now, in milliseconds, and strictly after the last one given: two items made
    in one millisecond still have an order by createdTime (Google's times differ in
    practice), so that "the oldest of two of one name" never falls to a random ID."""
    with _TIME_LOCK:
        now = datetime.now(timezone.utc)
        t = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if _LAST_TIME[0] is not None and t <= _LAST_TIME[0]:
            t = _LAST_TIME[0] + timedelta(milliseconds=1)
        _LAST_TIME[0] = t
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (t.microsecond // 1000)


def new_id():
    return "1" + secrets.token_urlsafe(24)


class DriveError(Exception):
    """An answer in Drive's error shape."""

    def __init__(self, code, reason, message, domain="global", location=None,
                 location_type=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.domain = code, reason, message, domain
        self.location, self.location_type = location, location_type
        self.headers = headers or {}

    def body(self):
        e = {"domain": self.domain, "reason": self.reason, "message": self.message}
        if self.location:
            e["locationType"] = self.location_type or "parameter"
            e["location"] = self.location
        return {"error": {"code": self.code, "message": self.message, "errors": [e]}}


class OAuthError(Exception):
    def __init__(self, status, error, description):
        super().__init__(error)
        self.status, self.error, self.description = status, error, description


def not_found(file_id, location="fileId"):
    return DriveError(404, "notFound", f"File not found: {file_id}.", location=location)


def bad_value(param, value=None):
    msg = "Invalid Value" if value is None else f"Invalid value '{value}'"
    return DriveError(400, "invalid", msg, location=param)


FAULT_ERRORS = {
    429: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("global", "internalError", "Internal Error"),
    502: ("global", "backendError", "Bad Gateway"),
    503: ("global", "backendError", "Service Unavailable"),
}
REASON_403 = {
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded"),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded"),
    "storageQuotaExceeded": ("global", "The user's Drive storage quota has been exceeded."),
}


def unauthorized():
    return DriveError(
        401, "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
        location="Authorization", location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'})


def quota_exceeded():
    return DriveError(403, "storageQuotaExceeded", REASON_403["storageQuotaExceeded"][1])


# --- the q language of files.list -----------------------------------------------------------

class QueryError(Exception):
    pass


def tokenize(q):
    toks, i, n = [], 0, len(q)
    while i < n:
        c = q[i]
        if c.isspace():
            i += 1
        elif c == "'":
            i += 1
            buf = []
            while True:
                if i >= n:
                    raise QueryError("unterminated string")
                c = q[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise QueryError("dangling backslash")
                    buf.append(q[i + 1])
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            toks.append(("str", "".join(buf)))
        elif c in "()":
            toks.append((c, c))
            i += 1
        elif q.startswith("!=", i):
            toks.append(("op", "!="))
            i += 2
        elif q.startswith("<=", i) or q.startswith(">=", i):
            toks.append(("op", q[i:i + 2]))
            i += 2
        elif c in "=<>":
            toks.append(("op", c))
            i += 1
        elif c.isalnum() or c == "_":
            j = i
            while j < n and (q[j].isalnum() or q[j] in "_."):
                j += 1
            toks.append(("word", q[i:j]))
            i = j
        else:
            raise QueryError(f"unexpected {c!r}")
    return toks


class QueryParser:
    """expr := and ('or' and)*; and := unary ('and' unary)*;
    unary := 'not' unary | '(' expr ')' | term;
    term := STRING 'in' 'parents' | FIELD OP VALUE | FIELD 'contains' STRING."""

    FIELDS = {"name": "str", "mimeType": "str", "trashed": "bool", "fullText": "str"}

    def __init__(self, q):
        self.toks = tokenize(q)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, kind=None, value=None):
        t = self.peek()
        if t[0] is None or (kind and t[0] != kind) or (value and t[1] != value):
            raise QueryError(f"expected {value or kind}, got {t[1]!r}")
        self.i += 1
        return t

    def parse(self):
        e = self.expr()
        if self.i != len(self.toks):
            raise QueryError(f"trailing {self.peek()[1]!r}")
        return e

    def expr(self):
        e = self.conj()
        while self.peek() == ("word", "or"):
            self.i += 1
            e = ("or", e, self.conj())
        return e

    def conj(self):
        e = self.unary()
        while self.peek() == ("word", "and"):
            self.i += 1
            e = ("and", e, self.unary())
        return e

    def unary(self):
        t = self.peek()
        if t == ("word", "not"):
            self.i += 1
            return ("not", self.unary())
        if t[0] == "(":
            self.i += 1
            e = self.expr()
            self.take(")")
            return e
        return self.term()

    def term(self):
        t = self.take()
        if t[0] == "str":
            self.take("word", "in")
            field = self.take("word")[1]
            if field != "parents":
                raise QueryError(f"'in {field}' is not supported")
            return ("in_parents", t[1])
        if t[0] != "word" or t[1] not in self.FIELDS:
            raise QueryError(f"unknown field {t[1]!r}")
        field, kind = t[1], self.FIELDS[t[1]]
        op = self.peek()
        if op == ("word", "contains") and kind == "str":
            self.i += 1
            return ("contains", field, self.take("str")[1])
        op = self.take("op")[1]
        if op not in ("=", "!="):
            raise QueryError(f"operator {op} not supported on {field}")
        if kind == "bool":
            v = self.take("word")[1]
            if v not in ("true", "false"):
                raise QueryError(f"{field} takes true or false")
            value = v == "true"
        else:
            value = self.take("str")[1]
        return ("cmp", field, op, value)


def q_matches(node, f):
    kind = node[0]
    if kind == "and":
        return q_matches(node[1], f) and q_matches(node[2], f)
    if kind == "or":
        return q_matches(node[1], f) or q_matches(node[2], f)
    if kind == "not":
        return not q_matches(node[1], f)
    if kind == "in_parents":
        pid = ROOT_ID if node[1] == "root" else node[1]
        return pid in f["parents"]
    if kind == "contains":
        return node[2].lower() in f[node[1]].lower() if node[1] != "fullText" else False
    _, field, op, value = node
    have = f.get(field) if field != "fullText" else ""
    return (have == value) if op == "=" else (have != value)


# --- fields= selection ---------------------------------------------------------------------

def parse_fields(s):
    """'a,b(c,d),e/f' -> {'a': None, 'b': {'c': None, 'd': None}, 'e': {'f': None}}."""
    pos = 0

    def group():
        nonlocal pos
        out = {}
        while pos < len(s):
            j = pos
            while j < len(s) and s[j] not in ",()/":
                j += 1
            name = s[pos:j].strip()
            if not name:
                raise ValueError("empty field")
            pos = j
            sub = None
            if pos < len(s) and s[pos] == "(":
                pos += 1
                sub = group()
                if pos >= len(s) or s[pos] != ")":
                    raise ValueError("unbalanced (")
                pos += 1
            elif pos < len(s) and s[pos] == "/":
                pos += 1
                rest = group_one()
                sub = rest
            out[name] = sub
            if pos < len(s) and s[pos] == ",":
                pos += 1
                continue
            break
        return out

    def group_one():
        nonlocal pos
        j = pos
        while j < len(s) and s[j] not in ",()/":
            j += 1
        name = s[pos:j].strip()
        pos = j
        sub = None
        if pos < len(s) and s[pos] == "/":
            pos += 1
            sub = group_one()
        elif pos < len(s) and s[pos] == "(":
            pos += 1
            sub = group()
            pos += 1
        return {name: sub}

    r = group()
    if pos != len(s):
        raise ValueError("unbalanced )")
    return r


def select(obj, sel):
    if sel is None or "*" in sel:
        return obj
    if isinstance(obj, list):
        return [select(x, sel) for x in obj]
    if not isinstance(obj, dict):
        return obj
    out = {}
    for k, sub in sel.items():
        if k in obj:
            out[k] = select(obj[k], sub)
    return out


# --- the state ---------------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.config = {"device_expires_in": 1800, "interval": 5, "access_expires_in": 3599,
                       "list_page_cap": 1000}
        self.devices = {}      # device_code -> dict
        self.access = {}       # access token -> {"expires_at", "refresh"}
        self.refresh = {}      # refresh token -> {"client_id", "client_secret", "scope", "valid"}
        self.counter = 0
        self.files = {}        # id -> file
        self.sessions = {}     # upload_id -> session
        self.page_tokens = {}  # token -> (query key, offset)
        self.faults = {}       # op -> [[fault, remaining], ...]
        self.limit = DEFAULT_LIMIT
        self.log = []

    def next_n(self):
        self.counter += 1
        return self.counter

    def usage(self):
        return sum(len(f["data"]) for f in self.files.values() if f["data"] is not None)

    def take_fault(self, ops):
        for op in ops:
            lst = self.faults.get(op)
            if lst:
                fault, left = lst[0]
                if left <= 1:
                    lst.pop(0)
                else:
                    lst[0][1] = left - 1
                return fault
        return None


STATE = State()


def file_json(f):
    j = {"kind": "drive#file", "id": f["id"], "name": f["name"], "mimeType": f["mimeType"],
         "parents": list(f["parents"]), "trashed": f["trashed"],
         "createdTime": f["createdTime"], "modifiedTime": f["modifiedTime"],
         "version": str(f["version"])}
    if f["data"] is not None:
        j["size"] = str(len(f["data"]))
        j["md5Checksum"] = f["md5"]
        j["sha256Checksum"] = f["sha256"]
    return j


FILE_DEFAULT = {"kind": None, "id": None, "name": None, "mimeType": None}


def set_content(f, data):
    f["data"] = bytes(data)
    f["md5"] = hashlib.md5(f["data"]).hexdigest()
    f["sha256"] = hashlib.sha256(f["data"]).hexdigest()


SEQ = itertools.count()


def make_file(name, parents, mime, data):
    t = now_rfc3339()
    f = {"id": new_id(), "name": name, "parents": parents, "mimeType": mime, "data": None,
         "md5": None, "sha256": None, "trashed": False, "createdTime": t, "modifiedTime": t,
         "version": 1, "seq": next(SEQ)}
    if data is not None:
        set_content(f, data)
    return f


def parse_content_range(v):
    """'bytes a-b/T', 'bytes a-b/*', 'bytes */T', 'bytes */*' -> (a, b, total) with None
    for '*' parts; raises ValueError otherwise."""
    if not v.startswith("bytes "):
        raise ValueError(v)
    rng, _, total = v[6:].strip().partition("/")
    if not _:
        raise ValueError(v)
    total = None if total == "*" else int(total)
    if rng == "*":
        return None, None, total
    a, _, b = rng.partition("-")
    a, b = int(a), int(b)
    if a < 0 or b < a or (total is not None and b >= total):
        raise ValueError(v)
    return a, b, total


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-google"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet: the request log is at /_test/requests
        pass

    # --- plumbing ---
    def send(self, status, body=b"", headers=None, ctype="application/json; charset=UTF-8"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        if body or status not in (204, 308):
            self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if self.entry is not None:
            self.entry["status"] = status

    def body_length(self):
        te = self.headers.get("Transfer-Encoding", "").lower()
        if te == "chunked":
            return "chunked"
        v = self.headers.get("Content-Length")
        if v is None:
            return 0
        n = int(v)
        if n < 0:
            raise ValueError("negative Content-Length")
        return n

    def read_body(self, limit=None):
        self.consumed = True
        n = self.body_length()
        if n == "chunked":
            out = bytearray()
            while True:
                line = self.rfile.readline(100)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    raise OverflowError
                out += self.rfile.read(size)
                self.rfile.readline(10)
        if n > MAX_BODY:
            raise OverflowError
        if limit is not None:
            n = min(n, limit)
        return self.rfile.read(n) if n else b""

    def drop(self, keep_bytes):
        """Read keep_bytes of the body and close the connection without an answer."""
        data = self.read_body(limit=keep_bytes)
        self.close_connection = True
        if self.entry is not None:
            self.entry["status"] = "dropped"
        return data

    def form(self, body):
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def json_body(self, body):
        if not body:
            return {}
        try:
            j = json.loads(body)
        except ValueError:
            raise DriveError(400, "parseError", "Parse Error")
        if not isinstance(j, dict):
            raise DriveError(400, "parseError", "Parse Error")
        return j

    def base_url(self):
        return "http://" + self.headers.get("Host", "%s:%d" % self.server.server_address)

    # --- dispatch ---
    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        self.entry = None
        self.consumed = False
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            if path.startswith("/_test/"):
                return self.control(path, self.read_body())
            auth = self.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.startswith("Bearer ") else None
            hdrs = {h: self.headers[h] for h in LOGGED_HEADERS if h in self.headers}
            hdrs["authorization"] = bool(auth)
            self.entry = {"method": self.command, "path": path, "query": query,
                          "headers": hdrs, "token": token}
            with STATE.lock:
                STATE.log.append(self.entry)
            if path in ("/device/code", "/token", "/revoke"):
                return self.oauth(path)
            return self.drive(path, query, token)
        except OverflowError:
            self.close_connection = True
            self.send(413, DriveError(413, "uploadTooLarge",
                                      "fake-google keeps at most 300 MiB in one request or file").body())
        except (ValueError, UnicodeDecodeError) as e:
            self.close_connection = True
            self.send(400, DriveError(400, "badRequest", f"Bad request: {e}").body())
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    # --- OAuth ---
    def oauth(self, path):
        if self.command != "POST":
            self.read_body()
            return self.send(405, {"error": "invalid_request", "error_description": "POST only"})
        ops = {"/device/code": ["device_code"], "/token": ["token"], "/revoke": ["revoke"]}[path]
        body = None
        try:
            if path == "/token":
                # Which grant decides whether the refresh faults apply: read the form first.
                body = self.read_body()
                form = self.form(body)
                self.entry["form"] = form
                if form.get("grant_type") == "refresh_token":
                    ops = ["refresh", "token"]
            with STATE.lock:
                fault = STATE.take_fault(ops)
            if fault:
                if "drop_after" in fault:
                    if body is None:
                        self.drop(fault["drop_after"])
                    else:
                        self.close_connection = True
                        self.entry["status"] = "dropped"
                    return None
                if "error" in fault:
                    st, desc = OAUTH_ERRORS[fault["error"]]
                    return self.send(st, {"error": fault["error"], "error_description": desc})
                st = fault["status"]
                err = {429: "rate_limit_exceeded", 401: "invalid_client", 403: "access_denied",
                       404: "not_found"}.get(st, "internal_failure")
                if body is None:
                    self.read_body()
                return self.send(st, {"error": err, "error_description": f"fake fault {st}"})
            if body is None:
                body = self.read_body()
                form = self.form(body)
                self.entry["form"] = form
            with STATE.lock:
                if path == "/device/code":
                    return self.send(200, self.device_code(form))
                if path == "/revoke":
                    return self.send(200, self.revoke(form))
                return self.send(200, self.token(form))
        except OAuthError as e:
            if body is None:
                self.read_body()
            return self.send(e.status, {"error": e.error, "error_description": e.description})

    def device_code(self, form):
        if not form.get("client_id"):
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        scope = form.get("scope", "")
        if not scope or any(s not in DRIVE_SCOPES for s in scope.split()):
            raise OAuthError(400, "invalid_scope", f"Invalid device flow scope: {scope}")
        code = "AH-" + secrets.token_urlsafe(32)
        user = "%s-%s" % (secrets.token_hex(2).upper(), secrets.token_hex(2).upper())
        exp = STATE.config["device_expires_in"]
        STATE.devices[code] = {"user_code": user, "client_id": form["client_id"], "scope": scope,
                               "expires_at": time.monotonic() + exp, "state": "pending"}
        return {"device_code": code, "user_code": user,
                "verification_url": "https://www.google.com/device",
                "expires_in": exp, "interval": STATE.config["interval"]}

    def issue(self, client_id, client_secret, scope, refresh=None):
        n = STATE.next_n()
        access = f"ya29.fake-{n}"
        exp = STATE.config["access_expires_in"]
        out = {"access_token": access, "expires_in": exp, "scope": scope, "token_type": "Bearer"}
        if refresh is None:
            refresh = f"1//fake-{n}"
            STATE.refresh[refresh] = {"client_id": client_id, "client_secret": client_secret,
                                      "scope": scope, "valid": True}
            out["refresh_token"] = refresh
        STATE.access[access] = {"expires_at": time.monotonic() + exp, "refresh": refresh}
        return out

    def token(self, form):
        grant = form.get("grant_type", "")
        cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        if not cid:
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if grant == DEVICE_GRANT:
            if not secret:
                raise OAuthError(400, "invalid_request", "client_secret is missing.")
            d = STATE.devices.get(form.get("device_code", ""))
            if d is None:
                raise OAuthError(400, "invalid_grant", "Malformed auth code.")
            if d["client_id"] != cid:
                raise OAuthError(401, "invalid_client", "Unauthorized")
            if time.monotonic() >= d["expires_at"]:
                raise OAuthError(*((400, "expired_token", "Bad Request")))
            if d["state"] == "denied":
                raise OAuthError(403, "access_denied", "Forbidden")
            if d["state"] == "pending":
                raise OAuthError(428, "authorization_pending", "Precondition Required")
            del STATE.devices[form["device_code"]]
            return self.issue(cid, secret, d["scope"])
        if grant == "refresh_token":
            r = STATE.refresh.get(form.get("refresh_token", ""))
            if r is None or not r["valid"]:
                raise OAuthError(*OAUTH_ERRORS["invalid_grant"][:1], "invalid_grant",
                                 OAUTH_ERRORS["invalid_grant"][1])
            if r["client_id"] != cid or r["client_secret"] != secret:
                raise OAuthError(401, "unauthorized_client", "Unauthorized")
            scope = form.get("scope")
            if scope and not set(scope.split()) <= set(r["scope"].split()):
                raise OAuthError(400, "invalid_scope", "The requested scope is not granted.")
            return self.issue(cid, secret, r["scope"], refresh=form["refresh_token"])
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def revoke(self, form):
        tok = form.get("token", "")
        if tok in STATE.access:
            tok = STATE.access[tok]["refresh"]
        r = STATE.refresh.get(tok)
        if r is None or not r["valid"]:
            raise OAuthError(400, "invalid_token", "Token expired or revoked")
        r["valid"] = False
        for a in [a for a, v in STATE.access.items() if v["refresh"] == tok]:
            del STATE.access[a]
        return {}

    # --- Drive ---
    def route(self, path, query):
        """(op, file_id, session_id) of a Drive request, or raise a 404."""
        m, q = self.command, query
        if path == "/drive/v3/about" and m == "GET":
            return "about", None
        if path == "/drive/v3/files":
            if m == "GET":
                return "list", None
            if m == "POST":
                return "create_folder", None
        if path.startswith("/drive/v3/files/") and path.count("/") == 4:
            fid = urllib.parse.unquote(path.rsplit("/", 1)[1])
            if m == "GET":
                return ("download" if q.get("alt") == "media" else "metadata"), fid
            if m == "DELETE":
                return "delete", fid
            if m == "PATCH":
                return "update", fid
        up_new = path == "/upload/drive/v3/files"
        up_old = path.startswith("/upload/drive/v3/files/") and path.count("/") == 5
        if up_new or up_old:
            fid = urllib.parse.unquote(path.rsplit("/", 1)[1]) if up_old else None
            if m == "PUT" and "upload_id" in q:
                cr = self.headers.get("Content-Range", "")
                return ("upload_query" if cr.startswith("bytes */") else "upload_chunk"), fid
            if (m == "POST" and up_new) or (m == "PATCH" and up_old):
                return "upload_start", fid
        raise DriveError(404, "notFound", f"Not Found: {m} {path}")

    def fault_error(self, fault, token):
        st = fault["status"]
        if st == 401:
            with STATE.lock:
                STATE.access.pop(token, None)  # a 401 means that token is dead: refresh
            return unauthorized()
        if st == 403:
            reason = fault.get("reason", "rateLimitExceeded")
            domain, msg = REASON_403[reason]
            return DriveError(403, reason, msg, domain=domain)
        if st == 404:
            return DriveError(404, "notFound", "Not Found")
        domain, reason, msg = FAULT_ERRORS.get(st, ("global", "backendError", f"Error {st}"))
        return DriveError(st, reason, msg, domain=domain)

    def drive(self, path, query, token):
        try:
            op, fid = self.route(path, query)
            self.entry["op"] = op
            with STATE.lock:
                a = STATE.access.get(token) if token else None
                if a is None or time.monotonic() >= a["expires_at"]:
                    raise unauthorized()
                fault = STATE.take_fault([op])
            if fault and "status" in fault:
                if op in ("upload_chunk", "upload_query") and fault["status"] == 404:
                    with STATE.lock:
                        STATE.sessions.pop(query.get("upload_id"), None)
                raise self.fault_error(fault, token)
            if fault and "drop_after" in fault:
                if op == "upload_chunk":
                    return self.upload_put(query, fid, drop_after=fault["drop_after"])
                self.drop(fault["drop_after"])
                return None
            if op in ("upload_chunk", "upload_query"):
                partial = fault.get("partial") if fault else None
                return self.upload_put(query, fid, partial=partial)
            body = self.read_body()
            if "json" in self.headers.get("Content-Type", "") and len(body) <= 65536:
                try:
                    self.entry["json"] = json.loads(body)
                except ValueError:
                    pass
            with STATE.lock:
                return getattr(self, "op_" + op)(query, fid, body)
        except DriveError as e:
            if self.entry.get("status") == "dropped":
                return None
            if not self.consumed and not self.close_connection:
                # Keep the connection in step: the body of a refused request is read off,
                # unless it is too large to be worth it.
                try:
                    n = self.body_length()
                    if n == "chunked" or n > MAX_BODY:
                        self.close_connection = True
                    elif n:
                        self.read_body()
                except ValueError:
                    self.close_connection = True
            self.send(e.code, e.body(), headers=e.headers)

    def fields(self, query, default):
        f = query.get("fields")
        if f is None:
            return default
        try:
            return parse_fields(f)
        except ValueError:
            raise DriveError(400, "invalidParameter", f"Invalid field selection {f}", location="fields")

    def get_file(self, fid, location="fileId"):
        if fid == "root":
            fid = ROOT_ID
        f = STATE.files.get(fid)
        if f is None:
            raise not_found(fid, location)
        return f

    def check_parents(self, meta):
        parents = meta.get("parents")
        if parents is None:
            return [ROOT_ID]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise DriveError(400, "invalid", "Invalid Value", location="parents")
        if len(parents) > 1:
            raise DriveError(403, "cannotAddParent",
                             "Increasing the number of parents is not allowed.")
        out = []
        for p in parents:
            pid = ROOT_ID if p == "root" else p
            if pid != ROOT_ID:
                pf = STATE.files.get(pid)
                if pf is None:
                    raise not_found(p, "parents")
                if pf["mimeType"] != FOLDER_MIME:
                    raise DriveError(400, "invalid", "The specified parent is not a folder.",
                                     location="parents")
            out.append(pid)
        return out

    def op_about(self, query, fid, body):
        if "fields" not in query:
            raise DriveError(400, "required", "The 'fields' parameter is required for this method.",
                             location="fields")
        usage = STATE.usage()
        trash = sum(len(f["data"]) for f in STATE.files.values() if f["trashed"] and f["data"])
        sq = {"usage": str(usage), "usageInDrive": str(usage), "usageInDriveTrash": str(trash)}
        if STATE.limit is not None:
            sq["limit"] = str(STATE.limit)
        about = {"kind": "drive#about", "storageQuota": sq,
                 "user": {"kind": "drive#user", "displayName": "Fake Club",
                          "emailAddress": "club@example.org", "me": True}}
        return self.send(200, select(about, self.fields(query, None)))

    def op_list(self, query, fid, body):
        sel = self.fields(query, {"kind": None, "incompleteSearch": None, "nextPageToken": None,
                                  "files": FILE_DEFAULT})
        spaces = query.get("spaces", "drive")
        if any(s not in ("drive", "appDataFolder") for s in spaces.split(",")):
            raise bad_value("spaces", spaces)
        # drive.v3.json: unspecified, the whole list (My Drive); above 1000, coerced to 1000.
        try:
            size = int(query.get("pageSize", "1000"))
        except ValueError:
            raise bad_value("pageSize", query.get("pageSize"))
        if size < 1:
            raise DriveError(400, "invalid",
                             f"Invalid value '{size}'. Values must be within the range: [1, 1000]",
                             location="pageSize")
        size = max(1, min(size, 1000, STATE.config["list_page_cap"]))
        q = query.get("q", "")
        try:
            tree = QueryParser(q).parse() if q.strip() else None
        except QueryError:
            raise bad_value("q")
        order = query.get("orderBy", "")
        keys = []
        for part in [p.strip() for p in order.split(",") if p.strip()]:
            name, _, d = part.partition(" ")
            if name not in ("createdTime", "modifiedTime", "name", "folder") or d not in ("", "desc"):
                raise bad_value("orderBy", order)
            keys.append((name, d == "desc"))
        key = (q, order, spaces)
        offset = 0
        if "pageToken" in query:
            got = STATE.page_tokens.get(query["pageToken"])
            if got is None or got[0] != key:
                raise bad_value("pageToken")
            offset = got[1]
        files = [f for f in STATE.files.values() if tree is None or q_matches(tree, f)]
        if "appDataFolder" == spaces:
            files = []
        files.sort(key=lambda f: f["id"])  # no order asked: none to rely on
        for name, desc in reversed(keys):
            if name == "folder":
                files.sort(key=lambda f: f["mimeType"] == FOLDER_MIME, reverse=not desc)
            else:
                # Ties within a millisecond: in the order the files were made.
                tie = "mseq" if name == "modifiedTime" else "seq"
                files.sort(key=lambda f: (f[name], f.get(tie, f["seq"])), reverse=desc)
        page = files[offset:offset + size]
        out = {"kind": "drive#fileList", "incompleteSearch": False,
               "files": [file_json(f) for f in page]}
        if offset + size < len(files):
            tok = secrets.token_urlsafe(16)
            STATE.page_tokens[tok] = (key, offset + size)
            out["nextPageToken"] = tok
        return self.send(200, select(out, sel))

    def op_create_folder(self, query, fid, body):
        meta = self.json_body(body)
        parents = self.check_parents(meta)
        mime = meta.get("mimeType") or "application/octet-stream"
        f = make_file(str(meta.get("name") or "Untitled"), parents, mime,
                      None if mime == FOLDER_MIME else b"")
        STATE.files[f["id"]] = f
        return self.send(200, select(file_json(f), self.fields(query, FILE_DEFAULT)))

    def op_metadata(self, query, fid, body):
        f = self.get_file(fid)
        return self.send(200, select(file_json(f), self.fields(query, FILE_DEFAULT)))

    def op_update(self, query, fid, body):
        f = self.get_file(fid)
        meta = self.json_body(body)
        if "name" in meta:
            f["name"] = str(meta["name"])
        if "trashed" in meta:
            f["trashed"] = bool(meta["trashed"])
        f["modifiedTime"] = now_rfc3339()
        f["version"] += 1
        f["mseq"] = next(SEQ)
        return self.send(200, select(file_json(f), self.fields(query, FILE_DEFAULT)))

    def op_delete(self, query, fid, body):
        f = self.get_file(fid)
        todo = [f["id"]]
        while todo:
            cur = todo.pop()
            STATE.files.pop(cur, None)
            todo += [c["id"] for c in STATE.files.values() if cur in c["parents"]]
        return self.send(204)

    def op_download(self, query, fid, body):
        f = self.get_file(fid)
        if f["data"] is None:
            raise DriveError(403, "fileNotDownloadable",
                             "Only files with binary content can be downloaded. Use Export with "
                             "Docs Editors files.", location="alt")
        data = f["data"]
        total = len(data)
        rng = self.headers.get("Range")
        hdrs = {"X-Goog-Hash": "md5=" + base64.b64encode(bytes.fromhex(f["md5"])).decode()}
        if rng and rng.startswith("bytes=") and "," not in rng:
            a, _, b = rng[6:].strip().partition("-")
            try:
                if a == "":
                    n = int(b)
                    a, b = max(total - n, 0), total - 1
                else:
                    a = int(a)
                    b = int(b) if b else total - 1
                    b = min(b, total - 1)
            except ValueError:
                a = b = None
            if a is not None:
                if a >= total or a > b:
                    hdrs["Content-Range"] = f"bytes */{total}"
                    return self.send(416, b"", headers=hdrs, ctype="text/plain")
                hdrs["Content-Range"] = f"bytes {a}-{b}/{total}"
                return self.send(206, data[a:b + 1], headers=hdrs, ctype=f["mimeType"])
        return self.send(200, data, headers=hdrs, ctype=f["mimeType"])

    def op_upload_start(self, query, fid, body):
        if query.get("uploadType") != "resumable":
            raise DriveError(400, "badContent", "fake-google speaks only uploadType=resumable",
                             location="uploadType")
        meta = self.json_body(body)
        xlen = self.headers.get("X-Upload-Content-Length")
        total = None
        if xlen is not None:
            try:
                total = int(xlen)
            except ValueError:
                raise DriveError(400, "badRequest", "Invalid X-Upload-Content-Length")
            if total < 0:
                raise DriveError(400, "badRequest", "Invalid X-Upload-Content-Length")
            if total > MAX_BODY:
                raise OverflowError
            if STATE.limit is not None and STATE.usage() + total > STATE.limit:
                raise quota_exceeded()
        if fid is not None:
            f = self.get_file(fid)
            if f["data"] is None:
                raise DriveError(403, "fileNotUpdatable", "A folder has no content to replace.")
            parents = None
        else:
            parents = self.check_parents(meta)
        uid = "ABPtcP" + secrets.token_urlsafe(30)
        STATE.sessions[uid] = {
            "file_id": fid, "meta": meta, "parents": parents, "total": total,
            "data": bytearray(), "done": None,
            "mime": meta.get("mimeType") or self.headers.get("X-Upload-Content-Type")
            or "application/octet-stream",
            "fields": self.fields(query, FILE_DEFAULT), "path": self.path.split("?")[0],
        }
        loc = f"{self.base_url()}{STATE.sessions[uid]['path']}?uploadType=resumable&upload_id={uid}"
        return self.send(200, b"", headers={"Location": loc, "X-GUploader-UploadID": uid})

    def upload_status(self, s):
        if s["done"] is not None:
            f = STATE.files.get(s["done"])
            if f is None:
                raise not_found(s["done"])
            return self.send(200, select(file_json(f), s["fields"]))
        n = len(s["data"])
        hdrs = {"Range": f"bytes=0-{n - 1}"} if n else {}
        return self.send(308, b"", headers=hdrs)

    def finish_upload(self, s):
        data = bytes(s["data"])
        if STATE.limit is not None:
            old = 0
            if s["file_id"] and s["file_id"] in STATE.files:
                old = len(STATE.files[s["file_id"]]["data"] or b"")
            if STATE.usage() - old + len(data) > STATE.limit:
                STATE.sessions.pop(s["uid"], None)
                raise quota_exceeded()
        if s["file_id"] is None:
            f = make_file(str(s["meta"].get("name") or "Untitled"), s["parents"], s["mime"], data)
            STATE.files[f["id"]] = f
        else:
            f = STATE.files.get(s["file_id"])
            if f is None:
                STATE.sessions.pop(s["uid"], None)
                raise not_found(s["file_id"])
            set_content(f, data)
            if "name" in s["meta"]:
                f["name"] = str(s["meta"]["name"])
            if s["meta"].get("mimeType"):
                f["mimeType"] = s["meta"]["mimeType"]
            f["modifiedTime"] = now_rfc3339()
            f["version"] += 1
            f["mseq"] = next(SEQ)
        s["done"] = f["id"]
        s["data"] = bytearray()
        return self.send(200, select(file_json(f), s["fields"]))

    def upload_put(self, query, fid, partial=None, drop_after=None):
        uid = query.get("upload_id", "")
        with STATE.lock:
            s = STATE.sessions.get(uid)
            if s is None:
                raise DriveError(404, "notFound", "The upload session was not found or has expired.")
            s["uid"] = uid
        cr = self.headers.get("Content-Range")
        try:
            n = self.body_length()
        except ValueError:
            raise DriveError(400, "badRequest", "Invalid Content-Length")
        if n != "chunked" and n > MAX_BODY:
            raise OverflowError
        if drop_after is not None:
            data = self.drop(drop_after)
        else:
            data = self.read_body()
        try:
            if cr is None:
                a, b, total = (0, len(data) - 1, len(data)) if data else (None, None, 0)
            else:
                a, b, total = parse_content_range(cr)
        except ValueError:
            raise DriveError(400, "badRequest", f"Invalid Content-Range: {cr}")
        with STATE.lock:
            if s["done"] is not None:
                return None if drop_after is not None else self.upload_status(s)
            if total is not None:
                if total > MAX_BODY:
                    raise OverflowError
                if s["total"] is not None and s["total"] != total:
                    raise DriveError(400, "badRequest",
                                     f"Content-Range total {total} differs from the length "
                                     f"{s['total']} given before.")
            if a is None:  # a status query
                if data:
                    raise DriveError(400, "badRequest", "A status query has no body.")
                if total is not None:
                    s["total"] = total
                    if len(s["data"]) == total:
                        return self.finish_upload(s)
                    if len(s["data"]) > total:
                        raise DriveError(400, "badRequest", "More bytes received than the total.")
                return self.upload_status(s)
            if drop_after is None and len(data) != b - a + 1:
                raise DriveError(400, "badRequest",
                                 f"Content-Range {cr} announces {b - a + 1} bytes, the body has {len(data)}.")
            got = len(s["data"])
            if a > got:
                raise DriveError(400, "badRequest",
                                 f"Invalid request. According to the Content-Range header, the upload "
                                 f"offset is {a} byte(s), which exceeds already uploaded size of {got} byte(s).")
            last = total is not None and b + 1 == total
            if drop_after is None and not last and len(data) % CHUNK_UNIT:
                raise DriveError(400, "badRequest",
                                 f"Invalid request. The chunk of {len(data)} bytes is not a multiple "
                                 f"of 262144 bytes (256 KiB) and is not the last one "
                                 f"(Content-Range {cr}).")
            if total is not None:
                s["total"] = total
            keep = data
            if partial is not None:
                keep = data[:max(0, min(int(partial), len(data)))]
            new = keep[got - a:] if a < got else keep  # bytes already held are not taken twice
            if len(s["data"]) + len(new) > MAX_BODY:
                raise OverflowError
            s["data"] += new
            if drop_after is not None:
                return None
            if s["total"] is not None and len(s["data"]) == s["total"]:
                return self.finish_upload(s)
            return self.upload_status(s)

    # --- control ---
    def control(self, path, body):
        try:
            j = json.loads(body) if body else {}
        except ValueError:
            return self.send(400, {"error": "body is not JSON"})
        m = self.command
        with STATE.lock:
            if path == "/_test/requests" and m == "GET":
                return self.send(200, STATE.log)
            if path == "/_test/files" and m == "GET":
                return self.send(200, [{
                    "id": f["id"], "name": f["name"], "parents": f["parents"],
                    "mimeType": f["mimeType"],
                    "size": len(f["data"]) if f["data"] is not None else None,
                    "md5Checksum": f["md5"], "sha256": f["sha256"], "trashed": f["trashed"]}
                    for f in sorted(STATE.files.values(), key=lambda f: f["createdTime"])])
            if m != "POST":
                return self.send(404, {"error": f"no control endpoint {m} {path}"})
            if path == "/_test/reset":
                STATE.reset()
                return self.send(200, {})
            if path == "/_test/fault":
                op, fault, times = j.get("op"), j.get("fault"), j.get("times", 1)
                ok = (op in FAULT_OPS and isinstance(fault, dict) and isinstance(times, int)
                      and times >= 1 and len(fault) >= 1 and (
                          (set(fault) <= {"status", "reason"} and isinstance(fault.get("status"), int)
                           and fault.get("reason", "rateLimitExceeded") in REASON_403)
                          or (set(fault) == {"drop_after"} and isinstance(fault["drop_after"], int)
                              and fault["drop_after"] >= 0)
                          or (set(fault) == {"partial"} and op == "upload_chunk"
                              and isinstance(fault["partial"], int) and fault["partial"] >= 0)
                          or (set(fault) == {"error"} and fault["error"] in OAUTH_ERRORS
                              and op in ("token", "refresh"))))
                if not ok:
                    return self.send(400, {"error": f"bad fault {j}"})
                STATE.faults.setdefault(op, []).append([fault, times])
                return self.send(200, {})
            if path in ("/_test/approve", "/_test/deny"):
                code = j.get("user_code")
                for d in STATE.devices.values():
                    if d["user_code"] == code:
                        d["state"] = "approved" if path == "/_test/approve" else "denied"
                        return self.send(200, {})
                return self.send(404, {"error": f"no pending device code with user_code {code!r}"})
            if path == "/_test/config":
                for k, v in j.items():
                    if k not in STATE.config or not isinstance(v, int) or v < 0:
                        return self.send(400, {"error": f"bad config {k}={v!r}"})
                STATE.config.update(j)
                return self.send(200, STATE.config)
            if path == "/_test/quota":
                lim = j.get("limit")
                if lim is not None and (not isinstance(lim, int) or lim < 0):
                    return self.send(400, {"error": "limit is bytes or null (unlimited)"})
                STATE.limit = lim
                return self.send(200, {})
            if path == "/_test/revoke_all":
                for r in STATE.refresh.values():
                    r["valid"] = False
                return self.send(200, {})
            if path == "/_test/expire_access":
                STATE.access.clear()
                return self.send(200, {})
        return self.send(404, {"error": f"no control endpoint {m} {path}"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-on-eof", action="store_true",
                    help="stop when standard input closes")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_on_eof:
        def watch():
            while sys.stdin.buffer.read(65536):
                pass
            stop()
        threading.Thread(target=watch, daemon=True).start()
    print(f"fake-google listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
