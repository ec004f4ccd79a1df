/*
 * epoll_loop.c — a physical limit for the httpd rows, not a loom program: the cheapest
 * HTTP/1.1 keep-alive "hello" server we know how to write in plain C, one thread and one
 * edge-triggered epoll set, no goroutines.  It answers every GET with the bytes
 * examples/httpd.c sends (same headers, a Date formatted once a second) and parses just
 * enough to count requests (each ends with an empty line).  Per request it makes one
 * recv that gets the request, one send, and its share of epoll_wait: the fewest system
 * calls a server can make.  bench/run.py drives it with wrk like the real servers, so the
 * table shows what this machine can serve to a wrk client that shares its two CPUs.
 *
 *   bench_epoll_loop [PORT]     listens on 127.0.0.1:PORT (else $PORT, else 8080)
 *   bench_epoll_loop --smoke    serves one request to itself and checks the answer
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { BUF = 8192 };

struct conn {
    int fd;
    size_t len;
    char in[BUF];
};

static char reply[256];
static size_t reply_len;
static time_t reply_sec;

/* The answer of examples/httpd.c to GET /, with a Date refreshed once a second. */
static void refresh_reply(void)
{
    time_t now = time(NULL);
    if (now == reply_sec)
        return;
    struct tm tm;
    gmtime_r(&now, &tm);
    char date[64];
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    reply_len = (size_t)snprintf(
            reply, sizeof reply,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 14\r\n"
            "Date: %s\r\n\r\nHello, World!\n",
            date);
    reply_sec = now;
}

static int listen_on(int port, int *bound)
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (ls < 0)
        return -1;
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 1024) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
        close(ls);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return ls;
}

/* Reads what c has (until a short read: the socket is empty; after a hang-up, until
 * EOF), answers every complete request, keeps a partial one.  0, or -1 when the
 * connection is done. */
static int serve(struct conn *c, int hup)
{
    for (;;) {
        ssize_t k = recv(c->fd, c->in + c->len, BUF - c->len, 0);
        if (k < 0)
            return errno == EAGAIN ? 0 : -1;
        if (k == 0)
            return -1;
        size_t room = BUF - c->len;
        c->len += (size_t)k;
        char *p = c->in, *end = c->in + c->len, *e;
        size_t n = 0;
        while ((e = memmem(p, (size_t)(end - p), "\r\n\r\n", 4))) {
            n++;
            p = e + 4;
        }
        if (n) {
            refresh_reply();
            char out[BUF];
            size_t ol = 0;
            for (size_t i = 0; i < n; i++) {
                if (ol + reply_len > sizeof out) {
                    if (send(c->fd, out, ol, MSG_NOSIGNAL) != (ssize_t)ol)
                        return -1;
                    ol = 0;
                }
                memcpy(out + ol, reply, reply_len);
                ol += reply_len;
            }
            if (send(c->fd, out, ol, MSG_NOSIGNAL) != (ssize_t)ol)
                return -1;
        }
        c->len = (size_t)(end - p);
        memmove(c->in, p, c->len);
        if (c->len == BUF)
            return -1; /* a head larger than the buffer */
        if ((size_t)k < room && !hup)
            return 0; /* a short read: empty, wait for the edge */
    }
}

static void run(int ls, int *stop_after)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->len = 0;
                    struct epoll_event ce = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = nc };
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce) < 0) {
                        close(fd);
                        free(nc);
                    }
                }
                continue;
            }
            if (serve(c, evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) < 0) {
                close(c->fd);
                free(c);
                if (stop_after && --*stop_after == 0) {
                    close(ep);
                    return;
                }
            }
        }
    }
}

/* --smoke: one request, no threads: connect, send, shut down the sending side, let the
 * loop answer and see the hang-up, then check the answer. */
static int smoke(void)
{
    int port, ls = listen_on(0, &port);
    if (ls < 0) {
        perror("listen");
        return 1;
    }
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(cl, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        return 1;
    }
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (send(cl, req, sizeof req - 1, 0) != (ssize_t)(sizeof req - 1))
        return 1;
    shutdown(cl, SHUT_WR); /* the loop answers, then sees EOF */
    int one = 1;
    run(ls, &one);
    char buf[512];
    ssize_t k = recv(cl, buf, sizeof buf - 1, 0);
    if (k <= 0) {
        fprintf(stderr, "smoke: no answer\n");
        return 1;
    }
    buf[k] = 0;
    if (strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) != 0 || !strstr(buf, "\r\n\r\nHello, World!\n")) {
        fprintf(stderr, "smoke: bad answer: %s\n", buf);
        return 1;
    }
    close(cl);
    close(ls);
    printf("epoll_loop: smoke ok\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--smoke") == 0)
        return smoke();
    int port = 8080, bound;
    const char *p = getenv("PORT");
    if (p && *p)
        port = atoi(p);
    if (argc > 1 && argv[1][0] != '-')
        port = atoi(argv[1]);
    int ls = listen_on(port, &bound);
    if (ls < 0) {
        perror("epoll_loop: listen");
        return 1;
    }
    printf("epoll_loop: listening on 127.0.0.1:%d\n", bound);
    fflush(stdout);
    run(ls, NULL);
    return 0;
}
