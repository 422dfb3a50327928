#!/usr/bin/env python3
"""Reads what the product put on the fake Drive through Google's own Python client
(google-api-python-client), for the black-box tests (tests/it/gdrive.rs): the byte-exact
check of a copy is made by Google's client, not by our code nor by the fake's own view.

usage: official_read.py BASE CLIENT_ID CLIENT_SECRET REFRESH_TOKEN PATH...

Each PATH is `FOLDER/SITE/NAME` under My Drive's root. For each, prints one line
`PATH SIZE SHA256 ID` (or `PATH missing`), resolving each name with files.list and `q`,
and downloading with MediaIoBaseDownload. The access token comes from the refresh grant
(google-auth's Credentials, token_uri on the fake). Exit 0 when every path was read.
"""
import hashlib
import io
import sys

import google_auth_httplib2
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.http import MediaIoBaseDownload

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from fidelity import LoopbackHttp  # noqa: E402  (the https→http loopback shim)

SCOPE = "https://www.googleapis.com/auth/drive.file"


def one(drive, parent, name, folder):
    esc = name.replace("\\", "\\\\").replace("'", "\\'")
    q = f"name = '{esc}' and '{parent}' in parents and trashed = false"
    if folder:
        q += " and mimeType = 'application/vnd.google-apps.folder'"
    got = drive.files().list(q=q, fields="files(id,name,size,createdTime)",
                             orderBy="createdTime", spaces="drive").execute()
    files = got.get("files", [])
    return files[0] if files else None


def main():
    if len(sys.argv) < 6:
        print(__doc__, file=sys.stderr)
        return 2
    base, cid, secret, refresh = sys.argv[1:5]
    creds = Credentials(token=None, refresh_token=refresh, token_uri=base + "/token",
                        client_id=cid, client_secret=secret, scopes=[SCOPE])
    http = google_auth_httplib2.AuthorizedHttp(creds, http=LoopbackHttp(base))
    drive = build("drive", "v3", http=http, static_discovery=True,
                  client_options={"api_endpoint": base + "/drive/v3/"})
    ok = True
    for path in sys.argv[5:]:
        parts = path.split("/")
        parent = "root"
        f = None
        for i, part in enumerate(parts):
            f = one(drive, parent, part, i < len(parts) - 1)
            if f is None:
                break
            parent = f["id"]
        if f is None:
            print(f"{path} missing", flush=True)
            ok = False
            continue
        buf = io.BytesIO()
        dl = MediaIoBaseDownload(buf, drive.files().get_media(fileId=f["id"]),
                                 chunksize=4 * 1024 * 1024)
        done = False
        while not done:
            _, done = dl.next_chunk()
        data = buf.getvalue()
        print(f"{path} {len(data)} {hashlib.sha256(data).hexdigest()} {f['id']}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
