/*
 * test_udp.c — loom_recvfrom, loom_sendto, loom_recvmsg and loom_sendmsg:
 *  - many datagrams over UDP on 127.0.0.1 between goroutines (LOOM_PROCS=2): two senders
 *    (one with loom_sendto, one with loom_sendmsg of three iovecs) to one receiver that
 *    drains the socket and parks again between batches (loom_recvfrom and loom_recvmsg in
 *    turn); every datagram arrives whole, byte-exact, in its sender's order, with that
 *    sender's address;
 *  - a receiver that waits before anything is sent is parked in the netpoller (loom_stats
 *    counts it waiting, not running) and woken by the datagram; an empty datagram is one;
 *  - a datagram longer than the buffer: cut short as the kernel says (recvfrom returns the
 *    part, or the full length with MSG_TRUNC; recvmsg sets MSG_TRUNC in msg_flags);
 *  - MSG_DONTWAIT: one try, -EAGAIN on an empty socket, without parking;
 *  - SCM_RIGHTS over an AF_UNIX socketpair, to a receiver parked in loom_recvmsg: the fd
 *    arrives and works, MSG_CMSG_CLOEXEC is honoured, a control buffer too small shows
 *    MSG_CTRUNC in msg_flags; and over a stream socketpair with 1 MiB of data behind it,
 *    which loom_sendmsg sends whole through partial writes while the reader is slow;
 *  - MSG_WAITALL: loom_recvfrom on a stream socket fed in pieces returns the whole buffer,
 *    or the pieces before end of file; on a datagram socket one datagram still;
 *  - a closed peer: loom_sendto and loom_sendmsg return -EPIPE, and SIGPIPE (left at its
 *    default action, which would kill the test) is never raised;
 *  - from a plain pthread, inside loom_run (on sockets loom has made non-blocking) and
 *    before it: the calls block until the data is there, as the plain calls do;
 *  - bad input: -EINVAL (negative fd, NULL buffer or msghdr, an address without its
 *    length), -EMSGSIZE past IOV_MAX iovecs, the kernel's -EBADF and -ENOTSOCK.
 */
#include "t.h"
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define MS 1000000LL

/* ---- helpers */

/* A UDP socket bound to 127.0.0.1 on a port of the kernel's choosing, its address in *a. */
static int udp_socket(struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK_GE(fd, 0);
    struct sockaddr_in b = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    CHECK_OK(bind(fd, (struct sockaddr *)&b, sizeof b));
    socklen_t len = sizeof *a;
    CHECK_OK(getsockname(fd, (struct sockaddr *)a, &len));
    return fd;
}

static bool same_addr(const struct sockaddr_in *x, const struct sockaddr_in *y)
{
    return x->sin_family == y->sin_family && x->sin_port == y->sin_port &&
           x->sin_addr.s_addr == y->sin_addr.s_addr;
}

/* Goroutines parked (loom_stats: waiting). */
static uint64_t waiting(void)
{
    struct loom_stats st;
    CHECK_OK(loom_stats(&st));
    return st.waiting;
}

/* The bytes of datagram seq of sender id: a header (id, seq), then len(seq) - 8 bytes of a
 * pattern. */
static size_t dgram_len(int seq)
{
    return 8 + (size_t)((seq * 7919) % 1400);
}

static void dgram_fill(unsigned char *b, int id, int seq)
{
    size_t n = dgram_len(seq);
    uint32_t h[2] = { (uint32_t)id, (uint32_t)seq };
    memcpy(b, h, 8);
    for (size_t i = 8; i < n; i++)
        b[i] = (unsigned char)(i * 31 + (size_t)seq * 17 + (size_t)id);
}

/* ---- many datagrams between goroutines */

enum { WINDOW = 16 }; /* datagrams a sender has in flight: well within the receive buffer */

struct flow {
    int rfd, sfd[2];
    struct sockaddr_in raddr, saddr[2];
    int per_sender;
    loom_chan *credit[2]; /* the receiver's go-ahead for the next window of a sender */
    int done;             /* goroutines finished, of the three */
};

struct sender {
    struct flow *f;
    int id;
};

static void send_side(void *arg)
{
    struct sender *s = arg;
    struct flow *f = s->f;
    unsigned char b[1500];
    for (int seq = 0; seq < f->per_sender; seq++) {
        if (seq > 0 && seq % WINDOW == 0) {
            int c;
            CHECK_OK(loom_recv(f->credit[s->id], &c));
        }
        dgram_fill(b, s->id, seq);
        size_t n = dgram_len(seq);
        if (s->id == 0) {
            CHECK_EQ(loom_sendto(f->sfd[0], b, n, 0, (struct sockaddr *)&f->raddr, sizeof f->raddr),
                     (ssize_t)n);
        } else {
            /* three iovecs: the header, one byte, the rest */
            struct iovec v[3] = { { b, 8 }, { b + 8, n > 8 }, { b + 8 + (n > 8), n - 8 - (n > 8) } };
            struct msghdr m = { .msg_name = &f->raddr,
                                .msg_namelen = sizeof f->raddr,
                                .msg_iov = v,
                                .msg_iovlen = 3 };
            CHECK_EQ(loom_sendmsg(f->sfd[1], &m, 0), (ssize_t)n);
        }
    }
    __atomic_add_fetch(&f->done, 1, __ATOMIC_SEQ_CST);
}

static void recv_side(void *arg)
{
    struct flow *f = arg;
    int next[2] = { 0, 0 };
    unsigned char b[2048], want[1500];
    for (int i = 0; i < 2 * f->per_sender; i++) {
        struct sockaddr_in from;
        ssize_t k;
        if (i % 2 == 0) {
            socklen_t len = sizeof from;
            k = loom_recvfrom(f->rfd, b, sizeof b, 0, (struct sockaddr *)&from, &len);
            CHECK_EQ(len, sizeof from);
        } else {
            struct iovec v[2] = { { b, 5 }, { b + 5, sizeof b - 5 } };
            struct msghdr m = { .msg_name = &from,
                                .msg_namelen = sizeof from,
                                .msg_iov = v,
                                .msg_iovlen = 2 };
            k = loom_recvmsg(f->rfd, &m, 0);
            CHECK_EQ(m.msg_namelen, sizeof from);
            CHECK_EQ(m.msg_flags & MSG_TRUNC, 0);
        }
        CHECK_GE(k, 8);
        uint32_t h[2];
        memcpy(h, b, 8);
        CHECK_LT(h[0], 2);
        int id = (int)h[0];
        CHECK(same_addr(&from, &f->saddr[id]));
        CHECK_EQ((int)h[1], next[id]); /* loopback keeps each sender's order */
        CHECK_EQ(k, (ssize_t)dgram_len(next[id]));
        dgram_fill(want, id, next[id]);
        CHECK_MEMEQ(b, want, (size_t)k);
        next[id]++;
        if (next[id] % WINDOW == 0 && next[id] < f->per_sender) {
            int c = 1;
            CHECK_OK(loom_send(f->credit[id], &c));
        }
    }
    CHECK_EQ(next[0], f->per_sender);
    CHECK_EQ(next[1], f->per_sender);
    __atomic_add_fetch(&f->done, 1, __ATOMIC_SEQ_CST);
}

static void test_many(void)
{
    struct flow f = { .per_sender = (int)t_scale(5000) };
    f.rfd = udp_socket(&f.raddr);
    for (int i = 0; i < 2; i++) {
        f.sfd[i] = udp_socket(&f.saddr[i]);
        f.credit[i] = loom_chan_new(sizeof(int), 1);
        CHECK(f.credit[i] != NULL);
    }
    struct sender s[2] = { { &f, 0 }, { &f, 1 } };
    loom_go(recv_side, &f);
    loom_go(send_side, &s[0]);
    loom_go(send_side, &s[1]);
    /* (the senders too: f is on this stack, and a sender may still be in its last call
     * when the receiver has the datagram) */
    T_WAIT_UNTIL(t_get(&f.done) == 3, 120, "every datagram received (%d of 3 finished)", t_get(&f.done));
    for (int i = 0; i < 2; i++) {
        CHECK_OK(loom_fd_close(f.sfd[i]));
        loom_chan_free(f.credit[i]);
    }
    CHECK_OK(loom_fd_close(f.rfd));
}

/* ---- a parked receiver is woken; an empty datagram; truncation; MSG_DONTWAIT */

struct parked {
    int fd;
    bool use_msg;
    size_t cap;
    int flags;
    ssize_t r;
    int msg_flags;
    struct sockaddr_in from;
    unsigned char buf[256];
    int done;
};

static void parked_recv(void *arg)
{
    struct parked *p = arg;
    socklen_t len = sizeof p->from;
    if (!p->use_msg) {
        p->r = loom_recvfrom(p->fd, p->buf, p->cap, p->flags, (struct sockaddr *)&p->from, &len);
    } else {
        struct iovec v = { p->buf, p->cap };
        struct msghdr m = { .msg_name = &p->from, .msg_namelen = len, .msg_iov = &v, .msg_iovlen = 1 };
        p->r = loom_recvmsg(p->fd, &m, p->flags);
        p->msg_flags = m.msg_flags;
    }
    __atomic_store_n(&p->done, 1, __ATOMIC_SEQ_CST);
}

/* Starts a receiver on fd, waits until it is parked, sends n bytes of b from sfd to to. */
static void park_then_send(struct parked *p, int sfd, const void *b, size_t n, const struct sockaddr_in *to)
{
    uint64_t before = waiting();
    loom_go(parked_recv, p);
    T_WAIT_UNTIL(waiting() == before + 1, 30, "the receiver to park (waiting %llu)",
                 (unsigned long long)waiting());
    CHECK_EQ(t_get(&p->done), 0);
    CHECK_EQ(loom_sendto(sfd, b, n, 0, (const struct sockaddr *)to, sizeof *to), (ssize_t)n);
    T_WAIT_UNTIL(t_get(&p->done), 30, "the parked receiver to wake");
}

static void test_park_trunc(void)
{
    struct sockaddr_in ra, sa;
    int r = udp_socket(&ra), s = udp_socket(&sa);
    unsigned char big[100];
    for (int i = 0; i < 100; i++)
        big[i] = (unsigned char)(i * 3 + 1);

    /* woken, whole, with the sender's address */
    struct parked p = { .fd = r, .cap = sizeof p.buf };
    park_then_send(&p, s, big, 100, &ra);
    CHECK_EQ(p.r, 100);
    CHECK_MEMEQ(p.buf, big, 100);
    CHECK(same_addr(&p.from, &sa));

    p = (struct parked){ .fd = r, .use_msg = true, .cap = sizeof p.buf };
    park_then_send(&p, s, big, 37, &ra);
    CHECK_EQ(p.r, 37);
    CHECK_MEMEQ(p.buf, big, 37);
    CHECK(same_addr(&p.from, &sa));
    CHECK_EQ(p.msg_flags, 0);

    /* an empty datagram is one, received as one */
    p = (struct parked){ .fd = r, .cap = sizeof p.buf };
    park_then_send(&p, s, NULL, 0, &ra);
    CHECK_EQ(p.r, 0);
    CHECK(same_addr(&p.from, &sa));

    /* cut short: the part; with MSG_TRUNC the full length; recvmsg: MSG_TRUNC in msg_flags */
    p = (struct parked){ .fd = r, .cap = 10 };
    park_then_send(&p, s, big, 100, &ra);
    CHECK_EQ(p.r, 10);
    CHECK_MEMEQ(p.buf, big, 10);
    p = (struct parked){ .fd = r, .cap = 10, .flags = MSG_TRUNC };
    park_then_send(&p, s, big, 100, &ra);
    CHECK_EQ(p.r, 100);
    CHECK_MEMEQ(p.buf, big, 10);
    p = (struct parked){ .fd = r, .use_msg = true, .cap = 10 };
    park_then_send(&p, s, big, 100, &ra);
    CHECK_EQ(p.r, 10);
    CHECK_MEMEQ(p.buf, big, 10);
    CHECK(p.msg_flags & MSG_TRUNC);

    /* the next datagram is the next one: nothing of the cut one is left */
    CHECK_EQ(loom_sendto(s, "abc", 3, 0, (struct sockaddr *)&ra, sizeof ra), 3);
    char b[16];
    CHECK_EQ(loom_recvfrom(r, b, sizeof b, 0, NULL, NULL), 3);
    CHECK_MEMEQ(b, "abc", 3);

    /* MSG_DONTWAIT: one try */
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    CHECK_ERR(loom_recvfrom(r, b, sizeof b, MSG_DONTWAIT, (struct sockaddr *)&from, &len), EAGAIN);
    struct iovec v = { b, sizeof b };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
    CHECK_ERR(loom_recvmsg(r, &m, MSG_DONTWAIT), EAGAIN);
    CHECK_EQ(loom_sendto(s, "de", 2, MSG_DONTWAIT, (struct sockaddr *)&ra, sizeof ra), 2);
    T_WAIT_UNTIL(loom_recvfrom(r, b, sizeof b, MSG_DONTWAIT, NULL, NULL) == 2, 30, "the datagram");
    CHECK_MEMEQ(b, "de", 2);

    /* connected: sendto without an address, recvfrom without one */
    CHECK_OK(connect(s, (struct sockaddr *)&ra, sizeof ra));
    CHECK_EQ(loom_sendto(s, "fgh", 3, 0, NULL, 0), 3);
    CHECK_EQ(loom_recvfrom(r, b, sizeof b, 0, NULL, NULL), 3);
    CHECK_MEMEQ(b, "fgh", 3);

    CHECK_OK(loom_fd_close(r));
    CHECK_OK(loom_fd_close(s));
}

/* ---- SCM_RIGHTS */

struct fdrecv {
    int sock;
    int ctl_fds; /* room for this many fds in the control buffer */
    int flags;
    ssize_t r;
    char data[8];
    int fds[4], nfds;
    int msg_flags;
    int done;
};

static void fd_receiver(void *arg)
{
    struct fdrecv *q = arg;
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec v = { q->data, sizeof q->data };
    struct msghdr m = { .msg_iov = &v,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = CMSG_SPACE((size_t)q->ctl_fds * sizeof(int)) };
    q->r = loom_recvmsg(q->sock, &m, q->flags);
    q->msg_flags = m.msg_flags;
    q->nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        CHECK_EQ(c->cmsg_level, SOL_SOCKET);
        CHECK_EQ(c->cmsg_type, SCM_RIGHTS);
        int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        CHECK_LE(q->nfds + n, 4);
        memcpy(q->fds + q->nfds, CMSG_DATA(c), (size_t)n * sizeof(int));
        q->nfds += n;
    }
    __atomic_store_n(&q->done, 1, __ATOMIC_SEQ_CST);
}

/* Sends data with the fds in one SCM_RIGHTS message from sock. */
static ssize_t send_fds(int sock, const void *data, size_t n, const int *fds, int nfds)
{
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec v = { (void *)data, n };
    struct msghdr m = { .msg_iov = &v,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    return loom_sendmsg(sock, &m, 0);
}

static void test_scm_rights(void)
{
    int types[2] = { SOCK_DGRAM, SOCK_STREAM };
    for (int t = 0; t < 2; t++) {
        int sp[2], pp[2];
        CHECK_OK(socketpair(AF_UNIX, types[t] | SOCK_CLOEXEC, 0, sp));
        CHECK_OK(pipe2(pp, O_CLOEXEC));

        /* one fd, to a receiver parked first; MSG_CMSG_CLOEXEC goes through */
        struct fdrecv q = { .sock = sp[0], .ctl_fds = 1, .flags = MSG_CMSG_CLOEXEC };
        uint64_t before = waiting();
        loom_go(fd_receiver, &q);
        T_WAIT_UNTIL(waiting() == before + 1, 30, "the fd receiver to park");
        CHECK_EQ(send_fds(sp[1], "fd", 2, &pp[1], 1), 2);
        T_WAIT_UNTIL(t_get(&q.done), 30, "the fd receiver to wake");
        CHECK_EQ(q.r, 2);
        CHECK_MEMEQ(q.data, "fd", 2);
        CHECK_EQ(q.nfds, 1);
        CHECK_EQ(q.msg_flags & MSG_CTRUNC, 0);
        CHECK(fcntl(q.fds[0], F_GETFD) & FD_CLOEXEC);
        CHECK_NE(q.fds[0], pp[1]);
        CHECK_EQ(write(q.fds[0], "via", 3), 3); /* the pipe's write end, under a new number */
        char b[8];
        CHECK_EQ(read(pp[0], b, sizeof b), 3);
        CHECK_MEMEQ(b, "via", 3);
        close(q.fds[0]);

        /* three fds, room for one (CMSG_SPACE of one int holds two): MSG_CTRUNC */
        int three[3] = { pp[0], pp[1], pp[1] };
        q = (struct fdrecv){ .sock = sp[0], .ctl_fds = 1 };
        CHECK_EQ(send_fds(sp[1], "x", 1, three, 3), 1);
        fd_receiver(&q);
        CHECK_EQ(q.r, 1);
        CHECK(q.msg_flags & MSG_CTRUNC);
        CHECK_LT(q.nfds, 3);
        for (int i = 0; i < q.nfds; i++)
            close(q.fds[i]);

        CHECK_OK(loom_fd_close(sp[0]));
        CHECK_OK(loom_fd_close(sp[1]));
        close(pp[0]);
        close(pp[1]);
    }
}

/* A stream: 1 MiB with an fd ahead of it, sent whole by one loom_sendmsg through partial
 * writes while the reader is slow; the fd comes with the first part. */

struct bulk {
    int sock, fd;
    const unsigned char *data;
    size_t n;
    ssize_t r;
    int done;
};

static void bulk_sender(void *arg)
{
    struct bulk *b = arg;
    b->r = send_fds(b->sock, b->data, b->n, &b->fd, 1);
    __atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
}

static void test_stream_sendmsg(void)
{
    enum { N = 1 << 20 };
    unsigned char *out = malloc(N), *in = malloc(N);
    CHECK(out && in);
    t_rng rng;
    t_rng_seed(&rng, 7);
    for (size_t i = 0; i < N; i++)
        out[i] = (unsigned char)t_rng_next(&rng);
    int sp[2], pp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    struct bulk b = { sp[1], pp[1], out, N, 0, 0 };
    uint64_t before = waiting();
    loom_go(bulk_sender, &b);
    /* the socket's buffer is far smaller than 1 MiB: the sender parks */
    T_WAIT_UNTIL(waiting() == before + 1, 30, "the sender to park on a full socket");
    CHECK_EQ(t_get(&b.done), 0);

    struct fdrecv q = { .sock = sp[0], .ctl_fds = 1 };
    fd_receiver(&q); /* the first part, with the fd */
    CHECK_GT(q.r, 0);
    CHECK_EQ(q.nfds, 1);
    close(q.fds[0]);
    memcpy(in, q.data, (size_t)q.r);
    size_t got = (size_t)q.r;
    int reads = 0;
    while (got < N) {
        size_t want = N - got < 4096 ? N - got : 4096;
        ssize_t k = loom_read(sp[0], in + got, want);
        CHECK_GT(k, 0);
        got += (size_t)k;
        if (++reads % 16 == 0)
            loom_sleep(100000); /* slow */
    }
    T_WAIT_UNTIL(t_get(&b.done), 30, "the sender to finish");
    CHECK_EQ(b.r, N);
    CHECK_MEMEQ(in, out, N);
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_OK(loom_fd_close(sp[1]));
    close(pp[0]);
    close(pp[1]);
    free(out);
    free(in);
}

/* ---- MSG_WAITALL: on a stream, the whole buffer (or what came before end of file); on
 * a datagram socket, one datagram */

struct dribble {
    int fd;
    int close_after; /* close fd after this many pieces (-1: never) */
    int done;
};

static void dribble_side(void *arg)
{
    struct dribble *d = arg;
    for (int i = 0; i < 4; i++) {
        if (i == d->close_after) {
            CHECK_OK(loom_fd_close(d->fd));
            break;
        }
        loom_sleep(MS); /* the receiver empties the socket and parks between pieces */
        char piece[100];
        memset(piece, 'a' + i, sizeof piece);
        CHECK_EQ(loom_write(d->fd, piece, sizeof piece), 100);
    }
    __atomic_store_n(&d->done, 1, __ATOMIC_SEQ_CST);
}

static void test_waitall(void)
{
    char b[500];
    for (int round = 0; round < 2; round++) {
        int sp[2];
        CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
        struct dribble d = { sp[1], round == 0 ? -1 : 3, 0 };
        loom_go(dribble_side, &d);
        ssize_t k = loom_recvfrom(sp[0], b, 400, MSG_WAITALL, NULL, NULL);
        CHECK_EQ(k, round == 0 ? 400 : 300); /* the second round ends after three pieces */
        for (int i = 0; i < k; i++)
            CHECK_EQ(b[i], 'a' + i / 100);
        T_WAIT_UNTIL(t_get(&d.done), 30, "the writer to finish");
        if (round == 0) {
            CHECK_OK(loom_fd_close(sp[1]));
            CHECK_EQ(loom_recvfrom(sp[0], b, 400, MSG_WAITALL, NULL, NULL), 0);
        }
        CHECK_OK(loom_fd_close(sp[0]));
    }
    int dp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dp));
    CHECK_EQ(loom_sendto(dp[1], "one", 3, 0, NULL, 0), 3);
    CHECK_EQ(loom_sendto(dp[1], "two", 3, 0, NULL, 0), 3);
    CHECK_EQ(loom_recvfrom(dp[0], b, sizeof b, MSG_WAITALL, NULL, NULL), 3);
    CHECK_MEMEQ(b, "one", 3);
    CHECK_EQ(loom_recvfrom(dp[0], b, sizeof b, MSG_WAITALL, NULL, NULL), 3);
    CHECK_MEMEQ(b, "two", 3);
    CHECK_OK(loom_fd_close(dp[0]));
    CHECK_OK(loom_fd_close(dp[1]));
}

/* ---- a closed peer: -EPIPE, no SIGPIPE */

static void test_epipe(void)
{
    int sp[2];
    CHECK_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp));
    CHECK_OK(loom_fd_close(sp[0]));
    CHECK_ERR(loom_sendto(sp[1], "x", 1, 0, NULL, 0), EPIPE);
    struct iovec v = { "y", 1 };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
    CHECK_ERR(loom_sendmsg(sp[1], &m, 0), EPIPE);
    CHECK_ERR(loom_sendmsg(sp[1], &m, MSG_DONTWAIT), EPIPE);
    CHECK_OK(loom_fd_close(sp[1]));
}

/* ---- bad input */

static void test_einval(void)
{
    struct sockaddr_in a;
    int u = udp_socket(&a);
    char b[8];
    socklen_t len = sizeof a;
    CHECK_ERR(loom_recvfrom(-1, b, sizeof b, 0, NULL, NULL), EINVAL);
    CHECK_ERR(loom_recvfrom(u, NULL, 8, 0, NULL, NULL), EINVAL);
    CHECK_ERR(loom_recvfrom(u, b, sizeof b, 0, (struct sockaddr *)&a, NULL), EINVAL);
    CHECK_ERR(loom_sendto(-1, b, 1, 0, (struct sockaddr *)&a, len), EINVAL);
    CHECK_ERR(loom_sendto(u, NULL, 1, 0, (struct sockaddr *)&a, len), EINVAL);
    CHECK_ERR(loom_sendto(u, b, 1, 0, (struct sockaddr *)&a, 1), EINVAL); /* the kernel's */
    CHECK_ERR(loom_recvmsg(u, NULL, 0), EINVAL);
    CHECK_ERR(loom_recvmsg(-1, NULL, 0), EINVAL);
    CHECK_ERR(loom_sendmsg(u, NULL, 0), EINVAL);
    struct msghdr m = { .msg_name = &a, .msg_namelen = len, .msg_iov = NULL, .msg_iovlen = 1 };
    CHECK_ERR(loom_sendmsg(u, &m, 0), EINVAL);
    static struct iovec many[IOV_MAX + 1];
    m.msg_iov = many;
    m.msg_iovlen = IOV_MAX + 1;
    CHECK_ERR(loom_sendmsg(u, &m, 0), EMSGSIZE);
    struct iovec huge[2] = { { b, (size_t)SSIZE_MAX }, { b, 2 } };
    m.msg_iov = huge;
    m.msg_iovlen = 2;
    CHECK_ERR(loom_sendmsg(u, &m, 0), EINVAL);
    /* a number that is not open, a file that is not a socket */
    int dead = dup(u);
    CHECK_GE(dead, 0);
    close(dead);
    CHECK_ERR(loom_recvfrom(dead, b, sizeof b, 0, NULL, NULL), EBADF);
    CHECK_ERR(loom_sendto(dead, b, 1, 0, (struct sockaddr *)&a, len), EBADF);
    int pp[2];
    CHECK_OK(pipe2(pp, O_CLOEXEC));
    CHECK_ERR(loom_recvfrom(pp[0], b, sizeof b, 0, NULL, NULL), ENOTSOCK);
    CHECK_ERR(loom_sendto(pp[1], b, 1, 0, NULL, 0), ENOTSOCK);
    struct iovec v = { b, 1 };
    struct msghdr pm = { .msg_iov = &v, .msg_iovlen = 1 };
    CHECK_ERR(loom_recvmsg(pp[0], &pm, 0), ENOTSOCK);
    CHECK_ERR(loom_sendmsg(pp[1], &pm, 0), ENOTSOCK);
    CHECK_OK(loom_fd_close(pp[0]));
    CHECK_OK(loom_fd_close(pp[1]));
    CHECK_OK(loom_fd_close(u));
}

/* ---- from a plain pthread: blocking calls */

struct thr {
    int fd;
    struct sockaddr_in to;
    ssize_t r1, r2;
    char b1[16], b2[16];
    struct sockaddr_in from;
    int started;
};

static void *thread_recv(void *arg)
{
    struct thr *t = arg;
    CHECK_EQ(loom_can_park(), 0);
    __atomic_store_n(&t->started, 1, __ATOMIC_SEQ_CST);
    socklen_t len = sizeof t->from;
    t->r1 = loom_recvfrom(t->fd, t->b1, sizeof t->b1, 0, (struct sockaddr *)&t->from, &len);
    struct iovec v = { t->b2, sizeof t->b2 };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
    t->r2 = loom_recvmsg(t->fd, &m, 0);
    /* and the sends, answering */
    CHECK_EQ(loom_sendto(t->fd, "ack", 3, 0, (struct sockaddr *)&t->from, len), 3);
    struct iovec w[2] = { { "ac", 2 }, { "k2", 2 } };
    struct msghdr n = { .msg_name = &t->from, .msg_namelen = len, .msg_iov = w, .msg_iovlen = 2 };
    CHECK_EQ(loom_sendmsg(t->fd, &n, 0), 4);
    return NULL;
}

/* r receives on a plain thread what s sends; loom has seen both sockets already when
 * touched says so (they are non-blocking then: the thread polls first). */
static void thread_exchange(int r, const struct sockaddr_in *ra, int s, const struct sockaddr_in *sa)
{
    struct thr t = { .fd = r };
    pthread_t th;
    CHECK_OK(pthread_create(&th, NULL, thread_recv, &t));
    T_WAIT_UNTIL(t_get(&t.started), 30, "the thread to start");
    struct timespec ts = { 0, 2 * MS }; /* it blocks in recvfrom, most likely */
    nanosleep(&ts, NULL);
    CHECK_EQ(loom_sendto(s, "one", 3, 0, (const struct sockaddr *)ra, sizeof *ra), 3);
    CHECK_EQ(loom_sendto(s, "two!", 4, 0, (const struct sockaddr *)ra, sizeof *ra), 4);
    char b[16];
    CHECK_EQ(loom_recvfrom(s, b, sizeof b, 0, NULL, NULL), 3);
    CHECK_MEMEQ(b, "ack", 3);
    CHECK_EQ(loom_recvfrom(s, b, sizeof b, 0, NULL, NULL), 4);
    CHECK_MEMEQ(b, "ack2", 4);
    CHECK_OK(pthread_join(th, NULL));
    CHECK_EQ(t.r1, 3);
    CHECK_MEMEQ(t.b1, "one", 3);
    CHECK(same_addr(&t.from, sa));
    CHECK_EQ(t.r2, 4);
    CHECK_MEMEQ(t.b2, "two!", 4);
}

static void test_thread(void)
{
    struct sockaddr_in ra, sa;
    int r = udp_socket(&ra), s = udp_socket(&sa);
    char b[4];
    CHECK_ERR(loom_recvfrom(r, b, sizeof b, MSG_DONTWAIT, NULL, NULL), EAGAIN);
    CHECK_ERR(loom_fd_wait(r, LOOM_READABLE, 0), EAGAIN); /* loom knows it: non-blocking now */
    CHECK(fcntl(r, F_GETFL) & O_NONBLOCK);
    thread_exchange(r, &ra, s, &sa);
    CHECK_OK(loom_fd_close(r));
    CHECK_OK(loom_fd_close(s));
}

static int main_fn(void *arg)
{
    (void)arg;
    if (t_want("many"))
        test_many();
    if (t_want("park"))
        test_park_trunc();
    if (t_want("scm"))
        test_scm_rights();
    if (t_want("stream"))
        test_stream_sendmsg();
    if (t_want("waitall"))
        test_waitall();
    if (t_want("epipe"))
        test_epipe();
    if (t_want("einval"))
        test_einval();
    if (t_want("thread"))
        test_thread();
    return 0;
}

/* Outside loom_run the calls are the plain blocking calls: a pthread receives and answers
 * what this thread sends. */
static void test_outside(void)
{
    struct sockaddr_in ra, sa;
    int r = udp_socket(&ra), s = udp_socket(&sa);
    thread_exchange(r, &ra, s, &sa);
    CHECK_EQ(fcntl(r, F_GETFL) & O_NONBLOCK, 0); /* left as it was */
    close(r);
    close(s);
}

int main(int argc, char **argv)
{
    t_cases(argc, argv);
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE raised would end the test */
    if (t_want("outside"))
        test_outside();
    setenv("LOOM_PROCS", "2", 1);
    T_RUN(main_fn, NULL);
    printf("test_udp: ok\n");
    return 0;
}
