/*
 * tests/systemd/test-boot.sh: does the unit's sandbox bind a process of this build?
 * Tries two calls that neopro-backup.service denies, and prints what the kernel said:
 *   sched_setaffinity=ok|<error>   in @resources, which SystemCallFilter= denies (EPERM)
 *   socket_af_netlink=ok|<error>   AF_NETLINK is not in RestrictAddressFamilies=
 * Built static by the test with zig cc for the installed binary's architecture (and,
 * for the negative case, for the other ABI of the same machine). Unsandboxed, both
 * succeed for any user: the mask set is "every CPU" (the kernel keeps the allowed
 * ones), and a NETLINK_ROUTE socket needs no privilege.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    cpu_set_t set;
    memset(&set, 0xff, sizeof set);
    int r = sched_setaffinity(0, sizeof set, &set);
    printf("sched_setaffinity=%s\n", r == 0 ? "ok" : strerror(errno));
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    printf("socket_af_netlink=%s\n", s >= 0 ? "ok" : strerror(errno));
    if (s >= 0) close(s);
    return 0;
}
