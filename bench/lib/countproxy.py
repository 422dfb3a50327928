#!/usr/bin/env python3
"""A TCP forwarder that counts the bytes going through it, for the videos benchmark.

usage: countproxy.py LISTEN_PORT TARGET_HOST TARGET_PORT COUNTS_FILE

Listens on 127.0.0.1:LISTEN_PORT, forwards every connection to TARGET_HOST:TARGET_PORT,
and rewrites COUNTS_FILE (atomically) with `sent received` (bytes from the clients to
the server, and back) each time a connection closes and every second while data flows.
The benchmark reads it before and after a run: the difference is what the run sent.
Exits on SIGTERM.
"""
import asyncio
import os
import signal
import sys

sent = 0
received = 0
dirty = True


def save(path: str) -> None:
    global dirty
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{sent} {received}\n")
    os.replace(tmp, path)
    dirty = False


async def pipe(reader, writer, upstream: bool) -> None:
    global sent, received, dirty
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            if upstream:
                sent += len(data)
            else:
                received += len(data)
            dirty = True
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    port, host, tport, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    save(path)

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(host, tport)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, True), pipe(sr, cw, False))
        cw.close()
        sw.close()
        save(path)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def flush():
        while True:
            await asyncio.sleep(1)
            if dirty:
                save(path)

    task = asyncio.create_task(flush())
    async with server:
        await stop.wait()
    task.cancel()
    save(path)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
