#!/usr/bin/env python3
"""Proof that tests/gdrive/fake_google.py speaks Drive v3 as Google's own client expects.

    fidelity.py [--base URL] [--log OUT.json]

Runs Google's official Python client (google-api-python-client, with the Drive v3
discovery document it ships, static_discovery=True) and google-auth against the fake:
the device flow (pending, slow_down, denied, approved), a folder, a 5 MiB resumable
upload in 1 MiB chunks (then again with a 308 partial answer injected, and again with
the connection dropped mid-chunk, both of which the client must resume), files.list
with q (a name with a quote, parents, mimeType, trashed) and pagination, a content
update in place (same ID), byte-exact downloads (MediaIoBaseDownload, ranged),
delete, about.storageQuota, Drive's error shapes as the client parses them (404,
403 storageQuotaExceeded), the refresh of an expired access token, and revocation.

Without --base it starts a fresh fake itself (same directory) and stops it at the end.
With --log it writes the fake's request log (/_test/requests) there, for
check_requests.py. Exit 0 only when every check passed; each check prints one line.

Run it with the venv of mk/gdrive.mk (make test-gdrive-fake).
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaFileUpload, MediaIoBaseDownload, MediaUpload

SCOPE = "https://www.googleapis.com/auth/drive.file"
FOLDER = "application/vnd.google-apps.folder"
CLIENT_ID = "fidelity-client.apps.googleusercontent.com"
CLIENT_SECRET = "fidelity-secret"
MIB = 1024 * 1024
CHUNK = 256 * 1024 * 4

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def post(base, path, data, form=False):
    if form:
        body = urllib.parse.urlencode(data).encode()
        ctype = "application/x-www-form-urlencoded"
    else:
        body = json.dumps(data).encode()
        ctype = "application/json"
    req = urllib.request.Request(base + path, data=body, method="POST",
                                 headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.loads(r.read())


class LoopbackHttp(httplib2.Http):
    """googleapiclient points the upload root at client_options.api_endpoint by
    replacing only the host of https://www.googleapis.com/upload/... (discovery.py,
    _fix_up_media_path_base_url): the scheme stays https. The fake is plain HTTP on
    loopback, so https://127.0.0.1:PORT becomes http://127.0.0.1:PORT here; nothing
    else of the request is touched."""

    def __init__(self, base):
        super().__init__(timeout=30, proxy_info=None)
        # As googleapiclient.http.build_http does: 308 is Resume Incomplete, not a redirect.
        self.redirect_codes = self.redirect_codes - {308}
        self.https_base = "https://" + urllib.parse.urlsplit(base).netloc
        self.base = base

    def request(self, uri, *args, **kwargs):
        if uri.startswith(self.https_base):
            uri = self.base + uri[len(self.https_base):]
        return super().request(uri, *args, **kwargs)


class BytesUpload(MediaUpload):
    """Bytes in memory, read by getbytes (has_stream False): when httplib2 sends a request
    again by itself after a dropped connection (it does, once), it sends the same bytes.
    With a stream (MediaFileUpload, MediaIoBaseUpload) that second send finds the stream
    slice already read and announces a Content-Length it never sends: a hang until the
    timeout, against Google as against the fake."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def chunksize(self):
        return CHUNK

    def mimetype(self):
        return "application/octet-stream"

    def size(self):
        return len(self.data)

    def resumable(self):
        return True

    def getbytes(self, begin, length):
        return self.data[begin:begin + length]

    def has_stream(self):
        return False


def start_fake():
    here = os.path.dirname(os.path.abspath(__file__))
    p = subprocess.Popen([sys.executable, os.path.join(here, "fake_google.py"), "--port", "0",
                          "--exit-on-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    prefix = "fake-google listening on "
    if not line.startswith(prefix):
        p.kill()
        sys.exit(f"fidelity: the fake did not start (said {line!r})")
    return p, line[len(prefix):].strip()


def device_flow(base):
    """Returns (access, refresh) after exercising the flow's answers."""
    st, dc = post(base, "/device/code", {"client_id": CLIENT_ID, "scope": SCOPE}, form=True)
    check(st == 200 and {"device_code", "user_code", "verification_url", "expires_in",
                         "interval"} <= set(dc), f"device/code answers its five fields ({st})")
    poll = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "device_code": dc["device_code"],
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    st, r = post(base, "/token", poll, form=True)
    check(st == 428 and r.get("error") == "authorization_pending", f"pending: 428 ({st} {r})")
    post(base, "/_test/fault", {"op": "token", "fault": {"error": "slow_down"}})
    st, r = post(base, "/token", poll, form=True)
    check(st == 403 and r.get("error") == "slow_down", f"slow_down: 403 ({st} {r})")
    # A denied code.
    _, dc2 = post(base, "/device/code", {"client_id": CLIENT_ID, "scope": SCOPE}, form=True)
    post(base, "/_test/deny", {"user_code": dc2["user_code"]})
    st, r = post(base, "/token", dict(poll, device_code=dc2["device_code"]), form=True)
    check(st == 403 and r.get("error") == "access_denied", f"denied: 403 access_denied ({st})")
    # The approved one; its access token is issued already expired (expires_in 0) so
    # that the first Drive call must refresh it.
    post(base, "/_test/approve", {"user_code": dc["user_code"]})
    post(base, "/_test/config", {"access_expires_in": 0})
    st, tok = post(base, "/token", poll, form=True)
    post(base, "/_test/config", {"access_expires_in": 3599})
    check(st == 200 and tok.get("token_type") == "Bearer" and tok.get("refresh_token")
          and tok.get("access_token", "").startswith("ya29.fake-"),
          f"approved: 200 with access and refresh tokens ({st})")
    st, r = post(base, "/token", poll, form=True)
    check(st == 400 and r.get("error") == "invalid_grant", f"a used device code: invalid_grant ({st})")
    return tok["access_token"], tok["refresh_token"]


def run_upload(request):
    response = None
    while response is None:
        _, response = request.next_chunk()
    return response


def download(drive, file_id, chunksize=CHUNK):
    buf = io.BytesIO()
    dl = MediaIoBaseDownload(buf, drive.files().get_media(fileId=file_id), chunksize=chunksize)
    done = False
    while not done:
        _, done = dl.next_chunk()
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base")
    ap.add_argument("--log")
    args = ap.parse_args()
    t0 = time.monotonic()
    proc = None
    base = args.base
    if base is None:
        proc, base = start_fake()
    try:
        run(base)
        if args.log:
            with open(args.log, "w") as f:
                json.dump(get(base, "/_test/requests"), f, indent=1)
    finally:
        if proc:
            proc.stdin.close()
            proc.wait(timeout=10)
    print(f"fidelity: {'FAILED ' + str(len(failures)) if failures else 'all passed'} "
          f"in {time.monotonic() - t0:.1f} s", flush=True)
    return 1 if failures else 0


def run(base):
    post(base, "/_test/reset", {})
    access, refresh = device_flow(base)
    creds = Credentials(token=access, refresh_token=refresh, token_uri=base + "/token",
                        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=[SCOPE])
    http = google_auth_httplib2.AuthorizedHttp(creds, http=LoopbackHttp(base))
    drive = build("drive", "v3", http=http, static_discovery=True,
                  client_options={"api_endpoint": base + "/drive/v3/"})

    # The first call carries the expired token: 401, refresh, the same call again.
    n0 = len(get(base, "/_test/requests"))
    folder = drive.files().create(body={"name": "neopro-backup", "mimeType": FOLDER,
                                        "parents": ["root"]}, fields="id").execute()
    log = get(base, "/_test/requests")[n0:]
    seq = [(r["method"], r["path"], r.get("status"), r.get("form", {}).get("grant_type")) for r in log]
    check([s[:3] for s in seq] == [("POST", "/drive/v3/files", 401), ("POST", "/token", 200),
                                   ("POST", "/drive/v3/files", 200)]
          and seq[1][3] == "refresh_token" and creds.token != access,
          f"an expired access token is refreshed and the call repeated ({seq})")
    fid = folder["id"]
    check(set(folder) == {"id"}, f"files.create with fields=id answers only the id ({folder})")
    sub = drive.files().create(body={"name": "sub", "mimeType": FOLDER, "parents": [fid]},
                               fields="id").execute()["id"]

    with tempfile.TemporaryDirectory(prefix="gdrive-fidelity-") as tmp:
        files_and_more(base, drive, creds, fid, sub, tmp)


def files_and_more(base, drive, creds, fid, sub, tmp):
    data = os.urandom(5 * MIB + 12345)
    src = os.path.join(tmp, "club's backup.tar")
    with open(src, "wb") as f:
        f.write(data)
    md5 = hashlib.md5(data).hexdigest()

    def upload(name, parent, path=src):
        media = MediaFileUpload(path, mimetype="application/octet-stream", chunksize=CHUNK,
                                resumable=True)
        req = drive.files().create(body={"name": name, "parents": [parent]}, media_body=media,
                                   fields="id,size,md5Checksum")
        return run_upload(req)

    # 1. A plain resumable upload.
    n0 = len(get(base, "/_test/requests"))
    up = upload("club's backup.tar", fid)
    log = get(base, "/_test/requests")[n0:]
    puts = [r for r in log if r["method"] == "PUT"]
    check(up.get("size") == str(len(data)) and up.get("md5Checksum") == md5 and set(up) ==
          {"id", "size", "md5Checksum"}, f"5 MiB resumable upload: size and md5 ({up})")
    check(len(puts) == 6 and all(r["status"] == 308 for r in puts[:-1]) and puts[-1]["status"] == 200
          and log[0]["headers"].get("x-upload-content-length") == str(len(data)),
          f"in 6 chunks of 1 MiB: 308 five times, then 200 ({[r['status'] for r in puts]})")

    # 2. A 308 that kept only part of a chunk: the client resumes from the Range.
    post(base, "/_test/fault", {"op": "upload_chunk", "fault": {"partial": 300000}})
    n0 = len(get(base, "/_test/requests"))
    up2 = upload("partial.tar", fid)
    log = get(base, "/_test/requests")[n0:]
    ranges = [r["headers"].get("content-range") for r in log if r["method"] == "PUT"]
    check(up2.get("md5Checksum") == md5 and up2.get("size") == str(len(data)),
          "an upload answered 308 with a partial Range completes byte-exact")
    check(len(ranges) > 1 and ranges[1].startswith("bytes 300000-"),
          f"the client resumed at the byte the 308 named ({ranges[:3]})")

    # 3. The connection dropped mid-chunk, twice (httplib2 sends a request a second time
    # by itself once): the client asks where the upload stands and goes on from there.
    post(base, "/_test/fault", {"op": "upload_chunk", "fault": {"drop_after": 100000}, "times": 2})
    n0 = len(get(base, "/_test/requests"))
    req = drive.files().create(body={"name": "dropped.tar", "parents": [fid]},
                               media_body=BytesUpload(data), fields="id,size,md5Checksum")
    broke = 0
    up3 = None
    while up3 is None and broke < 5:
        try:
            _, up3 = req.next_chunk()
        except (OSError, httplib2.HttpLib2Error):
            broke += 1
    log = get(base, "/_test/requests")[n0:]
    queries = [r for r in log if r.get("op") == "upload_query"]
    check(broke >= 1 and up3 is not None and up3.get("md5Checksum") == md5,
          f"an upload whose connection dropped completes byte-exact ({broke} break)")
    dropped = [r for r in log if r.get("status") == "dropped"]
    check(len(dropped) == 2 and len(queries) >= 1 and all(
        q["headers"].get("content-range") == f"bytes */{len(data)}" and q["status"] == 308
        for q in queries),
          f"after the drop the client asked `bytes */total` and got a 308 "
          f"({[(q['headers'].get('content-range'), q['status']) for q in queries]})")

    # 4. files.list with q: the spec's three shapes, a quote in a name, pagination.
    def q_list(q, **kw):
        out, page = [], None
        req = drive.files().list(q=q, spaces="drive", pageSize=kw.get("pageSize", 1000),
                                 fields="nextPageToken,files(id,name,size,mimeType,md5Checksum,"
                                        "modifiedTime,createdTime)")
        pages = 0
        while req is not None:
            page = req.execute()
            pages += 1
            out += page.get("files", [])
            req = drive.files().list_next(req, page)
        return out, pages

    esc = "club\\'s backup.tar"
    got, _ = q_list(f"name = '{esc}' and '{fid}' in parents and trashed = false")
    check([f["id"] for f in got] == [up["id"]] and got[0]["size"] == str(len(data))
          and got[0]["md5Checksum"] == md5 and "createdTime" in got[0],
          f"q: a file by a name with a quote in a folder ({len(got)} found)")
    got, _ = q_list("name = 'neopro-backup' and 'root' in parents and "
                    f"mimeType = '{FOLDER}' and trashed = false")
    check([f["id"] for f in got] == [fid] and "size" not in got[0],
          "q: a folder by name under root (no size for a folder)")
    got, pages = q_list(f"'{fid}' in parents and trashed = false", pageSize=2)
    check(sorted(f["name"] for f in got) == sorted(["club's backup.tar", "partial.tar",
                                                    "dropped.tar", "sub"]) and pages == 2,
          f"q: a folder's children over pages of 2 ({len(got)} in {pages} pages)")
    got, _ = q_list(f"'{sub}' in parents and trashed = false")
    check(got == [], "q: an empty folder lists nothing")
    try:
        drive.files().list(q="name = 'unterminated").execute()
        check(False, "a malformed q is refused")
    except HttpError as e:
        check(e.resp.status == 400 and e.reason == "Invalid Value", f"a malformed q: 400 ({e.reason})")

    # 5. Update the content in place: same ID, new bytes.
    data2 = os.urandom(3 * MIB + 77)
    src2 = os.path.join(tmp, "status.json")
    with open(src2, "wb") as f:
        f.write(data2)
    media = MediaFileUpload(src2, mimetype="application/octet-stream", chunksize=CHUNK,
                            resumable=True)
    n0 = len(get(base, "/_test/requests"))
    upd = run_upload(drive.files().update(fileId=up2["id"], body={}, media_body=media,
                                          fields="id,size,md5Checksum"))
    start = get(base, "/_test/requests")[n0]
    check(upd["id"] == up2["id"] and upd["md5Checksum"] == hashlib.md5(data2).hexdigest()
          and start["method"] == "PATCH" and start["path"] == f"/upload/drive/v3/files/{up2['id']}",
          f"files.update of the content keeps the ID ({start['method']} {start['path']})")

    # 6. Downloads, byte-exact, in ranged chunks (206) and in one piece.
    n0 = len(get(base, "/_test/requests"))
    check(download(drive, up["id"]) == data, "MediaIoBaseDownload: 5 MiB byte-exact (ranged)")
    log = get(base, "/_test/requests")[n0:]
    check(all(r["status"] == 206 and r["headers"].get("range") for r in log) and len(log) == 6,
          f"ranged download: 206 answers to Range requests ({[r['status'] for r in log]})")
    check(download(drive, up2["id"], chunksize=10 * MIB) == data2,
          "MediaIoBaseDownload of the updated file: the new bytes")
    meta = drive.files().get(fileId=up["id"], fields="id,name,size,md5Checksum,trashed").execute()
    check(meta == {"id": up["id"], "name": "club's backup.tar", "size": str(len(data)),
                   "md5Checksum": md5, "trashed": False}, f"files.get metadata ({meta})")

    # 7. about.storageQuota, then a quota that refuses the next upload.
    about = drive.about().get(fields="storageQuota").execute()
    sq = about.get("storageQuota", {})
    files = get(base, "/_test/files")
    usage = sum(f["size"] or 0 for f in files)
    check(sq.get("usage") == str(usage) and sq.get("limit") == "16106127360"
          and list(about) == ["storageQuota"], f"about.storageQuota ({sq})")
    post(base, "/_test/quota", {"limit": usage + 1000})
    try:
        upload("too-big.tar", fid)
        check(False, "an upload past the quota is refused")
    except HttpError as e:
        details = e.error_details if isinstance(e.error_details, list) else []
        check(e.resp.status == 403 and any(d.get("reason") == "storageQuotaExceeded" for d in details),
              f"an upload past the quota: 403 storageQuotaExceeded ({e.resp.status} {details})")
    post(base, "/_test/quota", {"limit": None})
    about = drive.about().get(fields="storageQuota").execute()
    check("limit" not in about["storageQuota"], "no limit: storageQuota without limit")

    # 8. A rate limit as Google sends it, parsed by the client.
    post(base, "/_test/fault", {"op": "list", "fault": {"status": 403, "reason": "userRateLimitExceeded"}})
    try:
        drive.files().list(q="trashed = false").execute()
        check(False, "an injected 403 userRateLimitExceeded is answered")
    except HttpError as e:
        check(e.resp.status == 403 and e.error_details[0]["reason"] == "userRateLimitExceeded",
              f"403 userRateLimitExceeded as the client reads it ({e.error_details})")

    # 9. Delete; then the file is gone (404 in Drive's shape).
    drive.files().delete(fileId=up["id"]).execute()
    try:
        drive.files().get(fileId=up["id"], fields="id").execute()
        check(False, "a deleted file is gone")
    except HttpError as e:
        check(e.resp.status == 404 and e.error_details[0]["reason"] == "notFound",
              f"a deleted file: 404 notFound ({e.resp.status})")
    drive.files().delete(fileId=fid).execute()
    left = get(base, "/_test/files")
    check(left == [], f"deleting the folder deleted what it held ({len(left)} left)")

    # 10. Revocation: the refresh token stops working (invalid_grant).
    st, _ = post(base, "/revoke", {"token": creds.refresh_token}, form=True)
    check(st == 200, f"revoke: 200 ({st})")
    try:
        creds.refresh(google_auth_httplib2.Request(LoopbackHttp(base)))
        check(False, "a revoked refresh token is refused")
    except RefreshError as e:
        check("invalid_grant" in str(e), f"a revoked refresh token: invalid_grant ({e})")
    st, r = post(base, "/revoke", {"token": creds.refresh_token}, form=True)
    check(st == 400 and r.get("error") == "invalid_token", f"revoke twice: 400 invalid_token ({st})")


if __name__ == "__main__":
    sys.exit(main())
