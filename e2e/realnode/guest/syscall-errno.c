/* syscall-errno: makes one system call by number, with zero arguments, and prints what the
 * kernel (or the seccomp filter in front of it) answered. The real-node test of syscalls
 * newer than some nodes' libseccomp uses it: busybox has no applet for them.
 *
 * Usage: syscall-errno NAME   (mseal, listmount, statmount)
 * Prints "NAME: ok" or "NAME: errno N (text)"; exits 0 unless NAME is unknown here.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Numbers from 424 on are the same on x86_64 and arm64 (the unified syscall table). */
static const struct {
    const char *name;
    long nr;
} calls[] = {
    {"statmount", 457},
    {"listmount", 458},
    {"mseal", 462},
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: syscall-errno NAME\n");
        return 2;
    }
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        if (strcmp(argv[1], calls[i].name) != 0) continue;
        errno = 0;
        long r = syscall(calls[i].nr, 0, 0, 0, 0);
        if (r == -1)
            printf("%s: errno %d (%s)\n", calls[i].name, errno, strerror(errno));
        else
            printf("%s: ok\n", calls[i].name);
        return 0;
    }
    fprintf(stderr, "syscall-errno: unknown syscall %s\n", argv[1]);
    return 2;
}
