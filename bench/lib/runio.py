#!/usr/bin/env python3
"""Run one command and measure it: wall time, exit code, and its disk I/O counters.

usage: runio.py OUTPUT_FILE [NAME=VALUE...] -- COMMAND [ARGS...]

NAME=VALUE pairs are added to the command's environment (no `env` process in between);
COMMAND is a path (no PATH search, which a NAME=VALUE could change).

Prints one line: `wall_seconds exit_code write_bytes cancelled_write_bytes read_bytes cpu_seconds`
(cpu_seconds: user + system time of the command and the children it reaped).
(No peak RSS here: posix_spawn shares this Python's memory until exec, and the kernel
records that in the child's ru_maxrss. Use /usr/bin/time -f %M, which forks.)
The command's stdout and stderr go to OUTPUT_FILE (put it on a tmpfs, e.g. /dev/shm,
so that they do not count as disk writes).

The I/O counters come from /proc/<pid>/io read after the process has exited but
before it is reaped: os.waitid(..., WEXITED | WNOWAIT) leaves it a zombie whose
counters are still readable. They include every child the command reaped (the kernel
adds a reaped child's counters to its parent's), so a shell script's figure covers
its cp, tar, find, ls ... processes. write_bytes counts pages dirtied in the page
cache for a block device (not tmpfs), at page granularity; cancelled_write_bytes
counts dirty pages dropped before write-back (files deleted or truncated in time).
"""
import os
import sys
import time


def main() -> int:
    args = sys.argv[1:]
    if "--" not in args or args.index("--") < 1 or args.index("--") == len(args) - 1:
        print(__doc__, file=sys.stderr)
        return 2
    sep = args.index("--")
    out, assigns, cmd = args[0], args[1:sep], args[sep + 1:]
    env = dict(os.environ)
    for a in assigns:
        k, eq, v = a.partition("=")
        if not eq or not k:
            print(f"runio: not NAME=VALUE: {a}", file=sys.stderr)
            return 2
        env[k] = v
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, fd, 1),
        (os.POSIX_SPAWN_DUP2, fd, 2),
    ]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawn(cmd[0], cmd, env, file_actions=actions)
    except OSError as e:
        print(f"runio: cannot start {cmd[0]}: {e}", file=sys.stderr)
        return 127
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - t0
    io = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, _, v = line.partition(":")
            io[k.strip()] = int(v)
    _, status, ru = os.wait4(pid, 0)
    os.close(fd)
    rc = os.waitstatus_to_exitcode(status)
    print(f"{wall:.6f} {rc} {io['write_bytes']} {io['cancelled_write_bytes']} "
          f"{io['read_bytes']} {ru.ru_utime + ru.ru_stime:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
