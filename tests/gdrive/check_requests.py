#!/usr/bin/env python3
"""Checks a request log of tests/gdrive/fake_google.py against Google's own description
of Drive v3 and against the OAuth endpoints of the spec.

    check_requests.py LOG.json [--discovery drive.v3.json]
    check_requests.py --self-test [--discovery drive.v3.json]

LOG.json is what GET /_test/requests answered: a list of
{"method","path","query":{k:v},"headers":{...,"authorization":bool},"form"?:{k:v}}.

A Drive request passes when:
  - (method, path) is a method of drive.v3.json: `/drive/v3/` + its `path`, or, for a
    method with mediaUpload, one of its upload paths (`/upload/drive/v3/` + `path`, which
    is what Google's client sends, or `mediaUpload.protocols.*.path`); a PUT on an upload
    path with `upload_id` is a chunk or a status query of a resumable session;
  - every query parameter is one the method takes (its `parameters` or the service-wide
    `parameters`; `uploadType` and `upload_id` for uploads), with a value of the
    parameter's type, enum and range; `alt=media` only on a method with
    supportsMediaDownload;
  - it carried an Authorization header; a Content-Range, when there is one, has the form
    `bytes a-b/total|*` or `bytes */total|*`.
An OAuth request passes when it is a POST of a form to /device/code (client_id, scope),
/token (grant_type urn:ietf:params:oauth:grant-type:device_code with client_id,
client_secret, device_code; or refresh_token with client_id, client_secret,
refresh_token, scope optional) or /revoke (token).

It prints one line per request that does not match, with why, and exits 1 if any; 0 and
a summary otherwise; 2 when it cannot read its inputs. --self-test feeds it requests
that must each be refused (and good ones that must pass) and exits 0 only if they are.

The discovery document is the one google-api-python-client ships
(googleapiclient/discovery_cache/documents/drive.v3.json), found through the running
Python's googleapiclient when --discovery is not given.
"""

import argparse
import json
import os
import re
import sys

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
OAUTH_FORMS = {  # path -> grant_type or None -> (required keys, optional keys)
    "/device/code": {None: ({"client_id", "scope"}, set())},
    "/token": {
        DEVICE_GRANT: ({"grant_type", "client_id", "client_secret", "device_code"}, set()),
        "refresh_token": ({"grant_type", "client_id", "client_secret", "refresh_token"}, {"scope"}),
    },
    "/revoke": {None: ({"token"}, set())},
}
CONTENT_RANGE = re.compile(r"^bytes (\*|(\d+)-(\d+))/(\*|\d+)$")


def find_discovery():
    import importlib.util
    spec = importlib.util.find_spec("googleapiclient")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("googleapiclient is not importable here: give --discovery")
    return os.path.join(list(spec.submodule_search_locations)[0], "discovery_cache",
                        "documents", "drive.v3.json")


def template_regex(prefix, path):
    out, pos = "", 0
    for m in re.finditer(r"\{\+?([^}]+)\}", path):
        out += re.escape(path[pos:m.start()]) + "[^/]+"
        pos = m.end()
    return re.compile("^" + re.escape(prefix) + out + re.escape(path[pos:]) + "$")


class Discovery:
    def __init__(self, doc):
        self.service_params = doc.get("parameters", {})
        root = "/" + doc["servicePath"].strip("/") + "/"         # /drive/v3/
        upload_root = "/upload" + root                            # /upload/drive/v3/
        self.methods = []  # (httpMethod, regex, method, kind) kind: api | upload
        self.literal = []

        def walk(resources):
            for res in resources.values():
                for mid, m in res.get("methods", {}).items():
                    paths = {m["path"]}
                    if "flatPath" in m:
                        paths.add(m["flatPath"])
                    for p in paths:
                        self.methods.append((m["httpMethod"], template_regex(root, p), m, "api"))
                    mu = m.get("mediaUpload")
                    if mu:
                        ups = {template_regex(upload_root, p) for p in paths}
                        for proto in mu.get("protocols", {}).values():
                            ups.add(template_regex("", proto["path"]))
                        for rx in ups:
                            self.methods.append((m["httpMethod"], rx, m, "upload"))
                walk(res.get("resources", {}))

        walk(doc["resources"])

    def candidates(self, method, path):
        return [(hm, m, kind) for hm, rx, m, kind in self.methods if rx.match(path)
                and (hm == method or (method == "PUT" and kind == "upload"))]


def value_problem(name, spec, value):
    t = spec.get("type", "string")
    if "enum" in spec and value not in spec["enum"]:
        return f"{name}={value!r} is not one of {spec['enum']}"
    if t == "integer":
        try:
            n = int(value)
        except ValueError:
            return f"{name}={value!r} is not an integer"
        if "minimum" in spec and n < int(spec["minimum"]):
            return f"{name}={n} is below its minimum {spec['minimum']}"
        if "maximum" in spec and n > int(spec["maximum"]):
            return f"{name}={n} is above its maximum {spec['maximum']}"
    if t == "boolean" and value not in ("true", "false"):
        return f"{name}={value!r} is not true or false"
    return None


def check_drive(disc, r):
    method, path, query = r.get("method"), r.get("path", ""), r.get("query", {}) or {}
    headers = r.get("headers", {}) or {}
    probs = []
    if not headers.get("authorization"):
        probs.append("no Authorization header")
    cr = headers.get("content-range")
    if cr is not None:
        m = CONTENT_RANGE.match(cr)
        if not m or (m.group(2) and int(m.group(3)) < int(m.group(2))) or (
                m.group(2) and m.group(4) != "*" and int(m.group(3)) >= int(m.group(4))):
            probs.append(f"malformed Content-Range {cr!r}")
    cands = disc.candidates(method, path)
    if not cands:
        return probs + [f"no method of drive.v3.json is {method} {path}"]
    best = None
    for hm, m, kind in cands:
        p = []
        session = method == "PUT"
        if session:
            if "upload_id" not in query:
                p.append("a PUT on an upload path without upload_id (not a resumable session)")
            if query.get("uploadType") != "resumable":
                p.append("a session PUT without uploadType=resumable")
            if cr is None and headers.get("content-length", "0") not in ("0", 0):
                p.append("a chunk without Content-Range")
        allowed = dict(disc.service_params)
        allowed.update({k: v for k, v in m.get("parameters", {}).items()
                        if v.get("location") == "query"})
        if kind == "upload":
            allowed.setdefault("uploadType", {"type": "string"})
            allowed["uploadType"] = {"type": "string", "enum": ["media", "multipart", "resumable"]}
            allowed["upload_id"] = {"type": "string"}
            if not session and "uploadType" not in query:
                p.append("an upload without uploadType")
        for k, v in query.items():
            if k not in allowed:
                p.append(f"{m['id']} takes no parameter {k!r}")
                continue
            vp = value_problem(k, allowed[k], str(v))
            if vp:
                p.append(vp)
        if query.get("alt") == "media" and not m.get("supportsMediaDownload"):
            p.append(f"alt=media on {m['id']}, which has no media download")
        required = [k for k, v in m.get("parameters", {}).items()
                    if v.get("required") and v.get("location") == "query"]
        for k in required:
            if k not in query:
                p.append(f"{m['id']} needs {k}")
        if not p:
            return probs
        if best is None or len(p) < len(best):
            best = [f"as {m['id']}: " + x for x in p]
    return probs + best


def check_oauth(r):
    path, form = r.get("path"), r.get("form")
    probs = []
    if r.get("method") != "POST":
        probs.append(f"{r.get('method')} {path}: the OAuth endpoints take POST only")
    if r.get("query"):
        probs.append(f"query parameters {sorted(r['query'])} on {path}: the spec sends a form")
    ctype = (r.get("headers", {}) or {}).get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        probs.append(f"Content-Type {ctype!r}, not application/x-www-form-urlencoded")
    if form is None:
        return probs + ["no form in the log"]
    kinds = OAUTH_FORMS[path]
    grant = form.get("grant_type") if path == "/token" else None
    if grant not in kinds:
        return probs + [f"grant_type {grant!r} is none of {sorted(k for k in kinds if k)}"]
    req, opt = kinds[grant]
    missing = req - set(form)
    extra = set(form) - req - opt
    if missing:
        probs.append(f"{path} without {sorted(missing)}")
    if extra:
        probs.append(f"{path} with unexpected {sorted(extra)}")
    if path == "/device/code" and "scope" in form and \
            form["scope"] != "https://www.googleapis.com/auth/drive.file":
        probs.append(f"scope {form['scope']!r}, the spec asks drive.file")
    return probs


def check_log(disc, log):
    bad = []
    for i, r in enumerate(log):
        path = r.get("path", "")
        if path in OAUTH_FORMS:
            probs = check_oauth(r)
        elif path.startswith("/_test/"):
            probs = ["a control endpoint in the log"]
        else:
            probs = check_drive(disc, r)
        if probs:
            bad.append((i, r, probs))
    return bad


def self_test(disc):
    auth = {"authorization": True}
    form_ct = {"content-type": "application/x-www-form-urlencoded"}
    good = [
        {"method": "GET", "path": "/drive/v3/files", "headers": auth, "query": {
            "q": "'root' in parents and trashed = false", "pageSize": "1000", "spaces": "drive",
            "fields": "nextPageToken,files(id)", "pageToken": "x", "orderBy": "createdTime"}},
        {"method": "POST", "path": "/drive/v3/files", "headers": auth, "query": {"fields": "id"}},
        {"method": "GET", "path": "/drive/v3/files/abc", "headers": auth, "query": {"alt": "media"}},
        {"method": "DELETE", "path": "/drive/v3/files/abc", "headers": auth, "query": {}},
        {"method": "GET", "path": "/drive/v3/about", "headers": auth, "query": {"fields": "storageQuota"}},
        {"method": "POST", "path": "/upload/drive/v3/files", "headers": auth,
         "query": {"uploadType": "resumable", "fields": "id,size,md5Checksum"}},
        {"method": "PATCH", "path": "/upload/drive/v3/files/abc", "headers": auth,
         "query": {"uploadType": "resumable"}},
        {"method": "PUT", "path": "/upload/drive/v3/files", "query": {
            "uploadType": "resumable", "upload_id": "X"},
         "headers": dict(auth, **{"content-range": "bytes 0-262143/*"})},
        {"method": "PUT", "path": "/upload/drive/v3/files", "query": {
            "uploadType": "resumable", "upload_id": "X"},
         "headers": dict(auth, **{"content-range": "bytes */1000"})},
        {"method": "POST", "path": "/token", "query": {}, "headers": form_ct, "form": {
            "grant_type": "refresh_token", "client_id": "c", "client_secret": "s",
            "refresh_token": "r"}},
        {"method": "POST", "path": "/token", "query": {}, "headers": form_ct, "form": {
            "grant_type": DEVICE_GRANT, "client_id": "c", "client_secret": "s", "device_code": "d"}},
        {"method": "POST", "path": "/device/code", "query": {}, "headers": form_ct, "form": {
            "client_id": "c", "scope": "https://www.googleapis.com/auth/drive.file"}},
        {"method": "POST", "path": "/revoke", "query": {}, "headers": form_ct, "form": {"token": "t"}},
    ]
    bad = [
        {"method": "GET", "path": "/drive/v2/files", "headers": auth, "query": {}},
        {"method": "PUT", "path": "/drive/v3/files/abc", "headers": auth, "query": {}},
        {"method": "GET", "path": "/drive/v3/files", "headers": auth, "query": {"folder": "x"}},
        {"method": "GET", "path": "/drive/v3/files", "headers": auth, "query": {"pageSize": "0"}},
        {"method": "GET", "path": "/drive/v3/files", "headers": {}, "query": {}},
        {"method": "GET", "path": "/drive/v3/about", "headers": auth, "query": {"alt": "media"}},
        {"method": "GET", "path": "/drive/v3/about", "headers": auth, "query": {"q": "x"}},
        {"method": "POST", "path": "/upload/drive/v3/files", "headers": auth,
         "query": {"uploadType": "chunked"}},
        {"method": "PUT", "path": "/upload/drive/v3/files", "query": {"uploadType": "resumable"},
         "headers": dict(auth, **{"content-range": "bytes 0-9/10"})},
        {"method": "PUT", "path": "/upload/drive/v3/files", "query": {
            "uploadType": "resumable", "upload_id": "X"},
         "headers": dict(auth, **{"content-range": "bytes 10-9/*"})},
        {"method": "POST", "path": "/token", "query": {}, "headers": form_ct, "form": {
            "grant_type": "authorization_code", "client_id": "c", "client_secret": "s", "code": "x"}},
        {"method": "POST", "path": "/token", "query": {}, "headers": form_ct, "form": {
            "grant_type": "refresh_token", "client_id": "c", "refresh_token": "r"}},
        {"method": "POST", "path": "/token", "query": {}, "headers": {"content-type": "application/json"},
         "form": {"grant_type": "refresh_token", "client_id": "c", "client_secret": "s",
                  "refresh_token": "r"}},
        {"method": "GET", "path": "/revoke", "query": {"token": "t"}, "headers": {}, "form": {}},
    ]
    ok = True
    for r in good:
        got = check_log(disc, [r])
        if got:
            print(f"self-test FAIL: refused a good request {r['method']} {r['path']}: {got[0][2]}")
            ok = False
    for r in bad:
        got = check_log(disc, [r])
        if not got:
            print(f"self-test FAIL: passed a bad request {r}")
            ok = False
    print(f"check_requests self-test: {len(good)} good passed, {len(bad)} bad refused"
          if ok else "check_requests self-test: FAILED")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="check a fake-google request log against drive.v3.json")
    ap.add_argument("log", nargs="?")
    ap.add_argument("--discovery")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    try:
        path = args.discovery or find_discovery()
        with open(path) as f:
            disc = Discovery(json.load(f))
        if args.self_test:
            return self_test(disc)
        if not args.log:
            ap.error("LOG.json is needed (or --self-test)")
        with open(args.log) as f:
            log = json.load(f)
        if not isinstance(log, list):
            raise ValueError("the log is not a JSON list")
    except (OSError, ValueError, KeyError) as e:
        print(f"check_requests: {e}", file=sys.stderr)
        return 2
    bad = check_log(disc, log)
    for i, r, probs in bad:
        print(f"request {i}: {r.get('method')} {r.get('path')}?"
              f"{'&'.join(f'{k}={v}' for k, v in (r.get('query') or {}).items())}")
        for p in probs:
            print(f"    {p}")
    if bad:
        print(f"check_requests: {len(bad)} of {len(log)} requests do not match "
              f"{os.path.basename(path)} or the OAuth endpoints")
        return 1
    print(f"check_requests: all {len(log)} requests match {os.path.basename(path)} "
          f"({sum(1 for r in log if r.get('path') in OAUTH_FORMS)} OAuth)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
