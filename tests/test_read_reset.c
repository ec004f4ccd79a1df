/*
 * test_read_reset.c — loom_read on a TCP socket that the peer reset after sending data:
 * the read after the data reports the reset (or end of file), it does not park.
 *
 * Reads on a TCP socket learn from TCP_INQ how much was left queued, and one that drained
 * the socket lets the next read park without asking the kernel (src/io.c).  A FIN counts
 * as a byte left; a reset does not, and its poller event may have been consumed by the
 * read that took the data.  The poller notes the error on the descriptor, so the next
 * read asks the kernel.  A context's deadline guards against a park that never ends.
 */
#include "t.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000LL

static int main_fn(void *arg)
{
    (void)arg;
    for (int round = 0; round < 20; round++) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        char buf[64];
        int ls = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(ls >= 0);
        CHECK_OK(bind(ls, (struct sockaddr *)&a, sizeof a));
        CHECK_OK(listen(ls, 1));
        CHECK_OK(getsockname(ls, (struct sockaddr *)&a, &len));
        int c = socket(AF_INET, SOCK_STREAM, 0);
        CHECK_OK(loom_connect(c, (struct sockaddr *)&a, sizeof a));
        int s = loom_accept(ls, NULL, NULL);
        CHECK(s >= 0);
        /* one wait first, so the socket is registered with the poller */
        CHECK_ERR(loom_fd_wait(c, LOOM_READABLE, 1 * MS), ETIMEDOUT);
        CHECK_EQ(loom_write(s, "hello", 5), 5);
        struct linger rst = { 1, 0 };
        CHECK_OK(setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof rst));
        CHECK_OK(close(s));  /* a reset after the 5 bytes */
        loom_sleep(20 * MS); /* both arrive, and the poller sees them, before the first read */
        CHECK_EQ(loom_read(c, buf, sizeof buf), 5);
        loom_ctx *guard = loom_ctx_with_timeout(NULL, 5000 * MS);
        loom_ctx *old = loom_ctx_set(guard);
        ssize_t r = loom_read(c, buf, sizeof buf);
        loom_ctx_set(old);
        loom_ctx_free(guard);
        CHECK_MSG(r == -ECONNRESET || r == 0, "round %d: the read after a reset returned %s", round,
                  t_errname(r));
        close(c);
        close(ls);
    }
    return 0;
}

int main(void)
{
    T_RUN(main_fn, NULL);
    printf("test_read_reset: ok\n");
    return 0;
}
