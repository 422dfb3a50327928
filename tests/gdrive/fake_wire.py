#!/usr/bin/env python3
"""The parts of tests/gdrive/fake_google.py that Google's Python client never exercises
(fidelity.py covers the rest) but that neopro-backup's client uses or may meet:
streamed uploads (`bytes a-b/*`, then the total on the last chunk, `bytes */*`), a chunk
not a multiple of 256 KiB refused, gaps refused, an expired session (404), status
queries, 416, the q escapes (\\' and \\\\), pagination tokens, the injected faults in
Drive's and OAuth's shapes, drop_after, missing and expired tokens, device codes that
expire, revoke_all, the 300 MiB bound.

    fake_wire.py        starts a fresh fake, runs, stops it; exit 0 when all passed

Standard library only (http.client on a raw connection, so that headers and bodies are
exactly what is written here).
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "https://www.googleapis.com/auth/drive.file"
FOLDER = "application/vnd.google-apps.folder"
KIB256 = 256 * 1024
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


class Fake:
    def __init__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.p = subprocess.Popen([sys.executable, os.path.join(here, "fake_google.py"),
                                   "--port", "0", "--exit-on-eof"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("fake-google listening on http://127.0.0.1:"):
            self.p.kill()
            sys.exit(f"fake_wire: the fake did not start ({line!r})")
        self.base = line.split()[-1]
        self.port = int(self.base.rsplit(":", 1)[1])
        self.token = None

    def req(self, method, path, body=b"", headers=None, auth=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json; charset=UTF-8")
        h["Content-Length"] = str(len(body))
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            j = json.loads(data) if data else None
        except ValueError:
            j = None
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), j, data

    def form(self, path, fields):
        return self.req("POST", path, urllib.parse.urlencode(fields).encode(),
                        {"Content-Type": "application/x-www-form-urlencoded"}, auth=False)

    def ctl(self, path, obj=None):
        st, _, j, _ = self.req("POST" if obj is not None else "GET", "/_test/" + path,
                               obj if obj is not None else b"", auth=False)
        return st, j

    def login(self):
        _, _, dc, _ = self.form("/device/code", {"client_id": "c", "scope": SCOPE})
        self.ctl("approve", {"user_code": dc["user_code"]})
        _, _, tok, _ = self.form("/token", {"client_id": "c", "client_secret": "s",
                                            "device_code": dc["device_code"],
                                            "grant_type": DEVICE_GRANT})
        self.token = tok["access_token"]
        return tok

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def err_reason(j):
    try:
        return j["error"]["errors"][0]["reason"]
    except (TypeError, KeyError, IndexError):
        return None


def start_upload(f, name, parent, length=None, path="/upload/drive/v3/files"):
    h = {"X-Upload-Content-Type": "application/octet-stream"}
    if length is not None:
        h["X-Upload-Content-Length"] = str(length)
    st, hd, _, _ = f.req("POST" if path.endswith("files") else "PATCH",
                         path + "?uploadType=resumable&fields=id,size,md5Checksum",
                         {"name": name, "parents": [parent]} if parent else {}, h)
    loc = hd.get("location", "")
    return st, loc[len(f.base):] if loc.startswith(f.base) else loc


def put(f, session, data, cr):
    return f.req("PUT", session, data, {"Content-Range": cr} if cr else {})


def main():
    t0 = time.monotonic()
    f = Fake()
    try:
        run(f)
    finally:
        f.stop()
    print(f"fake_wire: {'FAILED ' + str(len(failures)) if failures else 'all passed'} "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return 1 if failures else 0


def run(f):
    # --- tokens ---
    st, hd, j, _ = f.req("GET", "/drive/v3/files", auth=False)
    check(st == 401 and err_reason(j) == "authError" and "www-authenticate" in hd,
          f"no token: 401 authError with WWW-Authenticate ({st})")
    f.token = "ya29.made-up"
    st, _, _, _ = f.req("GET", "/drive/v3/files")
    check(st == 401, f"an unknown token: 401 ({st})")
    tok = f.login()
    check(tok["access_token"].startswith("ya29.fake-") and tok["refresh_token"].startswith("1//fake-"),
          "tokens look like ya29.fake-N and 1//fake-N")
    st, _, j, _ = f.req("GET", "/drive/v3/files?q=trashed%20%3D%20false&pageSize=1000")
    check(st == 200 and j["files"] == [], f"an empty drive lists nothing ({st})")

    # --- device flow: expiry, the error faults on token/refresh ---
    f.ctl("config", {"device_expires_in": 0})
    _, _, dc, _ = f.form("/device/code", {"client_id": "c", "scope": SCOPE})
    f.ctl("config", {"device_expires_in": 1800})
    st, _, j, _ = f.form("/token", {"client_id": "c", "client_secret": "s",
                                    "device_code": dc["device_code"], "grant_type": DEVICE_GRANT})
    check(st == 400 and j == {"error": "expired_token", "error_description": "Bad Request"},
          f"an expired device code: 400 expired_token ({st} {j})")
    refresh = {"client_id": "c", "client_secret": "s", "refresh_token": tok["refresh_token"],
               "grant_type": "refresh_token"}
    f.ctl("fault", {"op": "refresh", "fault": {"error": "invalid_grant"}})
    st, _, j, _ = f.form("/token", refresh)
    check(st == 400 and j.get("error") == "invalid_grant", f"fault invalid_grant on refresh ({st})")
    f.ctl("fault", {"op": "token", "fault": {"status": 503}, "times": 2})
    st1 = f.form("/token", refresh)[0]
    st2 = f.form("/token", refresh)[0]
    st3, _, j, _ = f.form("/token", refresh)
    check((st1, st2, st3) == (503, 503, 200) and "refresh_token" not in j and j["token_type"] == "Bearer",
          f"times=2: two 503 then a refresh without a new refresh token ({st1},{st2},{st3})")
    f.token = j["access_token"]
    st, _, j, _ = f.form("/token", dict(refresh, grant_type="password"))
    check(st == 400 and j["error"] == "unsupported_grant_type", "an unknown grant: unsupported_grant_type")
    st, _, j, _ = f.req("POST", "/token", json.dumps(refresh).encode(),
                        {"Content-Type": "application/json"}, auth=False)
    check(st == 400 and j["error"] == "invalid_request", f"a JSON body at /token: 400 ({st})")

    # --- folders and q ---
    st, _, j, _ = f.req("POST", "/drive/v3/files?fields=id",
                        {"name": "it's a \\ folder", "mimeType": FOLDER, "parents": ["root"]})
    check(st == 200 and list(j) == ["id"], f"a folder: 200 {{id}} ({st} {j})")
    fid = j["id"]
    q = ("name = 'it\\'s a \\\\ folder' and 'root' in parents and "
         f"mimeType = '{FOLDER}' and trashed = false")
    st, _, j, _ = f.req("GET", "/drive/v3/files?" + urllib.parse.urlencode(
        {"q": q, "fields": "nextPageToken,files(id,name,size,mimeType)", "pageSize": 1000,
         "spaces": "drive"}))
    check(st == 200 and [x["id"] for x in j["files"]] == [fid] and "size" not in j["files"][0],
          f"q with \\' and \\\\ escapes finds the folder ({j})")
    for bad in ["name = 'x", "name == 'x'", "size > 3", "'x' in owners", "name = 'a' and"]:
        st, _, j, _ = f.req("GET", "/drive/v3/files?" + urllib.parse.urlencode({"q": bad}))
        check(st == 400 and err_reason(j) == "invalid", f"q {bad!r}: 400 invalid ({st})")
    st, _, j, _ = f.req("GET", "/drive/v3/files?" + urllib.parse.urlencode(
        {"q": "not (name = 'nothing') and (trashed = true or trashed = false)"}))
    check(st == 200 and len(j["files"]) == 1, "q with not, or and parentheses")
    st, _, j, _ = f.req("POST", "/drive/v3/files?fields=id",
                        {"name": "x", "mimeType": FOLDER, "parents": ["nope"]})
    check(st == 404 and err_reason(j) == "notFound", f"a folder under a missing parent: 404 ({st})")

    # --- a streamed upload: bytes a-b/* then the total on the last chunk ---
    st, sess = start_upload(f, "status.json", fid)
    check(st == 200 and "upload_id=" in sess and sess.startswith("/upload/drive/v3/files?"),
          f"upload start: 200 with a Location on the api root ({st} {sess})")
    data = os.urandom(3 * KIB256 + 1000)
    st, hd, _, _ = put(f, sess, b"", "bytes */*")
    check(st == 308 and "range" not in hd, f"query before anything: 308 without Range ({st} {hd.get('range')})")
    st, _, j, _ = put(f, sess, data[:KIB256 + 5], f"bytes 0-{KIB256 + 4}/*")
    check(st == 400, f"a chunk not a multiple of 256 KiB, not the last: 400 ({st})")
    st, hd, _, _ = put(f, sess, data[:2 * KIB256], f"bytes 0-{2 * KIB256 - 1}/*")
    check(st == 308 and hd.get("range") == f"bytes=0-{2 * KIB256 - 1}",
          f"a 512 KiB chunk of an unknown total: 308 Range bytes=0-524287 ({st} {hd.get('range')})")
    st, _, _, _ = put(f, sess, data[3 * KIB256:], f"bytes {3 * KIB256}-{len(data) - 1}/{len(data)}")
    check(st == 400, f"a gap: 400 ({st})")
    st, hd, _, _ = put(f, sess, b"", "bytes */*")
    check(st == 308 and hd.get("range") == f"bytes=0-{2 * KIB256 - 1}", "bytes */*: where it stands")
    st, hd, _, _ = put(f, sess, data[KIB256:3 * KIB256], f"bytes {KIB256}-{3 * KIB256 - 1}/*")
    check(st == 308 and hd.get("range") == f"bytes=0-{3 * KIB256 - 1}",
          f"a chunk overlapping what was kept: the new part taken ({hd.get('range')})")
    st, _, j, _ = put(f, sess, data[3 * KIB256:], f"bytes {3 * KIB256}-{len(data) - 1}/{len(data)}")
    md5 = hashlib.md5(data).hexdigest()
    check(st == 200 and j == {"id": j.get("id"), "size": str(len(data)), "md5Checksum": md5},
          f"the last chunk with the total: 200 with id, size, md5 ({st} {j})")
    st_id = j["id"]
    st, _, j2, _ = put(f, sess, b"", f"bytes */{len(data)}")
    check(st == 200 and j2 == j, "a query after the end: 200 with the file again")
    st, hd, body, raw = f.req("GET", f"/drive/v3/files/{st_id}?alt=media",
                              headers={"Range": f"bytes=10-{KIB256}"})
    check(st == 206 and raw == data[10:KIB256 + 1] and hd.get("content-range") ==
          f"bytes 10-{KIB256}/{len(data)}", f"Range: 206 with Content-Range ({st})")
    st, hd, _, _ = f.req("GET", f"/drive/v3/files/{st_id}?alt=media",
                         headers={"Range": f"bytes={len(data)}-"})
    check(st == 416 and hd.get("content-range") == f"bytes */{len(data)}", f"past the end: 416 ({st})")
    st, _, _, raw = f.req("GET", f"/drive/v3/files/{st_id}?alt=media")
    check(st == 200 and raw == data, "no Range: 200, the whole file")

    # --- the content of an existing file replaced, same ID; the query finalizes ---
    data2 = os.urandom(KIB256)
    st, sess = start_upload(f, None, None, path=f"/upload/drive/v3/files/{st_id}")
    check(st == 200 and sess.startswith(f"/upload/drive/v3/files/{st_id}?"), f"PATCH start ({sess})")
    st, _, _, _ = put(f, sess, data2, f"bytes 0-{KIB256 - 1}/*")
    st, _, j, _ = put(f, sess, b"", f"bytes */{KIB256}")
    check(st == 200 and j["id"] == st_id and j["md5Checksum"] == hashlib.md5(data2).hexdigest(),
          f"bytes */TOTAL once all is there: 200, the same ID, the new content ({st})")
    st, _, j, _ = f.req("GET", f"/drive/v3/files/{st_id}?fields=id,name,size,md5Checksum,trashed")
    check(j == {"id": st_id, "name": "status.json", "size": str(KIB256),
                "md5Checksum": hashlib.md5(data2).hexdigest(), "trashed": False},
          f"metadata after the update ({j})")

    # --- faults on chunks: partial, expired session, drop_after ---
    big = os.urandom(4 * KIB256)
    st, sess = start_upload(f, "b.tar", fid, len(big))
    f.ctl("fault", {"op": "upload_chunk", "fault": {"partial": 1000}})
    st, hd, _, _ = put(f, sess, big[:2 * KIB256], f"bytes 0-{2 * KIB256 - 1}/{len(big)}")
    check(st == 308 and hd.get("range") == "bytes=0-999", f"partial 1000: 308 bytes=0-999 ({hd.get('range')})")
    f.ctl("fault", {"op": "upload_chunk", "fault": {"drop_after": 5000}})
    c = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
    dropped = False
    try:
        c.request("PUT", sess, big[1000:1000 + 2 * KIB256], {
            "Authorization": "Bearer " + f.token,
            "Content-Range": f"bytes 1000-{1000 + 2 * KIB256 - 1}/{len(big)}"})
        c.getresponse().read()
    except (OSError, http.client.HTTPException):
        dropped = True
    c.close()
    st, hd, _, _ = put(f, sess, b"", f"bytes */{len(big)}")
    check(dropped and st == 308 and hd.get("range") == "bytes=0-5999",
          f"drop_after 5000: no answer, 5000 more bytes kept ({dropped} {hd.get('range')})")
    f.ctl("fault", {"op": "upload_chunk", "fault": {"status": 404}})
    st, _, _, _ = put(f, sess, big[6000:6000 + KIB256], f"bytes 6000-{6000 + KIB256 - 1}/{len(big)}")
    st2, _, _, _ = put(f, sess, b"", f"bytes */{len(big)}")
    check(st == 404 and st2 == 404, f"404 on a chunk: the session is gone ({st}, then {st2})")
    st, _, j, _ = put(f, "/upload/drive/v3/files?uploadType=resumable&upload_id=nope", b"", "bytes */*")
    check(st == 404, "an unknown session: 404")

    # --- Drive faults, their shapes; 401 kills the token ---
    for fault, want in [({"status": 429}, (429, "rateLimitExceeded")),
                        ({"status": 500}, (500, "internalError")),
                        ({"status": 503}, (503, "backendError")),
                        ({"status": 403, "reason": "rateLimitExceeded"}, (403, "rateLimitExceeded")),
                        ({"status": 403, "reason": "storageQuotaExceeded"}, (403, "storageQuotaExceeded"))]:
        f.ctl("fault", {"op": "about", "fault": fault})
        st, _, j, _ = f.req("GET", "/drive/v3/about?fields=storageQuota")
        check((st, err_reason(j)) == want and j["error"]["code"] == st and j["error"]["message"],
              f"fault {fault} on about: {want} ({st} {err_reason(j)})")
    st, _, j, _ = f.req("GET", "/drive/v3/about")
    check(st == 400 and err_reason(j) == "required", "about without fields: 400 required")
    f.ctl("fault", {"op": "metadata", "fault": {"status": 401}})
    st1 = f.req("GET", f"/drive/v3/files/{fid}")[0]
    st2 = f.req("GET", f"/drive/v3/files/{fid}")[0]
    check((st1, st2) == (401, 401), f"a 401 fault: that token stays dead until refreshed ({st1}, {st2})")
    st, _, j, _ = f.form("/token", refresh)
    f.token = j["access_token"]
    check(f.req("GET", f"/drive/v3/files/{fid}")[0] == 200, "after a refresh: 200")
    f.ctl("fault", {"op": "list", "fault": {"drop_after": 0}})
    try:
        f.req("GET", "/drive/v3/files")
        check(False, "drop_after on list: no answer")
    except (OSError, http.client.HTTPException):
        check(True, "drop_after on list: the connection closed without an answer")

    # --- quota on start, pagination, delete ---
    f.ctl("quota", {"limit": 10})
    st, _ = start_upload(f, "q.tar", fid, 11)
    check(st == 403, f"a known length past the quota: 403 at the start ({st})")
    f.ctl("quota", {"limit": None})
    for i in range(5):
        f.req("POST", "/drive/v3/files?fields=id", {"name": f"d{i}", "mimeType": FOLDER, "parents": [fid]})
    f.ctl("config", {"list_page_cap": 2})
    names, tokn, pages = [], None, 0
    while True:
        qs = {"q": f"'{fid}' in parents and trashed = false", "pageSize": 1000,
              "orderBy": "createdTime", "fields": "nextPageToken,files(name)"}
        if tokn:
            qs["pageToken"] = tokn
        st, _, j, _ = f.req("GET", "/drive/v3/files?" + urllib.parse.urlencode(qs))
        pages += 1
        names += [x["name"] for x in j["files"]]
        tokn = j.get("nextPageToken")
        if not tokn or pages > 10:
            break
    check(names == ["status.json", "d0", "d1", "d2", "d3", "d4"] and pages == 3,
          f"list_page_cap 2: 3 pages in createdTime order ({names}, {pages})")
    st, _, _, _ = f.req("GET", "/drive/v3/files?pageToken=forged")
    check(st == 400, "a forged pageToken: 400")
    st, _, _, raw = f.req("DELETE", f"/drive/v3/files/{fid}")
    check(st == 204 and raw == b"", "delete: 204, no body")
    st, _, j, _ = f.req("DELETE", f"/drive/v3/files/{fid}")
    check(st == 404 and err_reason(j) == "notFound", "delete again: 404 notFound")
    st, j = f.ctl("files")
    check(j == [], "the folder's files went with it")

    # --- bounds, revoke_all, the log ---
    c = http.client.HTTPConnection("127.0.0.1", f.port, timeout=10)
    c.putrequest("PUT", "/upload/drive/v3/files?uploadType=resumable&upload_id=x")
    c.putheader("Authorization", "Bearer " + f.token)
    c.putheader("Content-Length", str(300 * 1024 * 1024 + 1))
    c.endheaders()
    r = c.getresponse()
    check(r.status in (404, 413), f"a body over 300 MiB is not read ({r.status})")
    c.close()
    f.ctl("revoke_all", {})
    st, _, j, _ = f.form("/token", refresh)
    check(st == 400 and j == {"error": "invalid_grant",
                              "error_description": "Token has been expired or revoked."},
          "revoke_all: refresh answers invalid_grant")
    st, log = f.ctl("requests")
    check(all({"method", "path", "query", "headers"} <= set(r) for r in log)
          and not any(r["path"].startswith("/_test/") for r in log)
          and any(r["headers"].get("content-range") == "bytes */*" for r in log),
          f"the request log: {len(log)} requests, no control ones, headers kept")
    f.ctl("reset", {})
    st, log = f.ctl("requests")
    check(log == [], "reset forgets the log")


if __name__ == "__main__":
    sys.exit(main())
