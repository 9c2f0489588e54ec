/* forge-audit: what a hostile workload on a learning node can do with the runtime's default
 * capabilities (CAP_AUDIT_WRITE): send the audit subsystem a user message (AUDIT_USER_AVC)
 * of its own text. Without auditd the kernel prints it to its log, newlines and all, so the
 * text can hold a second line shaped like a kernel AppArmor record. The real-node learning
 * test sends one and checks that the node learns nothing from it.
 *
 * Usage: forge-audit TEXT   ("@NOW@" in TEXT becomes the current time as audit(2) stamps it)
 * Exits 0 when the kernel acknowledged the message.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: forge-audit TEXT\n");
        return 2;
    }
    static char text[8192];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char stamp[64];
    snprintf(stamp, sizeof stamp, "%lld.%03ld", (long long)now.tv_sec, now.tv_nsec / 1000000);
    const char *in = argv[1];
    size_t n = 0;
    while (*in && n + sizeof stamp < sizeof text) {
        if (strncmp(in, "@NOW@", 5) == 0) {
            n += (size_t)snprintf(text + n, sizeof text - n, "%s", stamp);
            in += 5;
        } else {
            text[n++] = *in++;
        }
    }
    text[n++] = '\0';

    int fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT);
    if (fd < 0) {
        perror("socket(NETLINK_AUDIT)");
        return 1;
    }
    static char buf[NLMSG_SPACE(sizeof text)];
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    h->nlmsg_len = NLMSG_LENGTH(n);
    h->nlmsg_type = AUDIT_USER_AVC;
    h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    h->nlmsg_seq = 1;
    memcpy(NLMSG_DATA(h), text, n);
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, buf, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
        perror("sendto");
        return 1;
    }
    static char reply[4096];
    ssize_t got = recv(fd, reply, sizeof reply, 0);
    if (got < 0) {
        perror("recv");
        return 1;
    }
    struct nlmsghdr *r = (struct nlmsghdr *)reply;
    if (r->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(r);
        if (e->error) {
            fprintf(stderr, "the kernel refused the message: %s\n", strerror(-e->error));
            return 1;
        }
    }
    printf("sent %zu bytes\n", n);
    return 0;
}
