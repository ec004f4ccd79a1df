/*
 * hook_fanout.c — a small service that fans out blocking library calls from goroutines.
 *
 *   hook_fanout REDIS_PORT URL [PORT]
 *
 * listens on 127.0.0.1:PORT (default 0: a free port; it prints "hook_fanout: listening on
 * 127.0.0.1:PORT").  Each line a client sends is a key; for each one the service asks, at
 * the same time, redis-server on 127.0.0.1:REDIS_PORT for INCR KEY (hiredis's blocking
 * API) and URL for a page (libcurl's easy API), and answers one line:
 *
 *   KEY count=N http=STATUS bytes=LEN ms=ELAPSED
 *
 * Nothing here is asynchronous: each connection is a goroutine that reads with plain
 * read(), each lookup a goroutine that calls redisCommand or curl_easy_perform, and they
 * meet on a channel.  Linked with libloom_hook, every one of those calls parks its goroutine
 * in loom's netpoller instead of holding a thread, so a thousand connections and their
 * lookups run on LOOM_PROCS threads.  SIGINT or SIGTERM stops it.
 *
 *   redis-server --port 6380 --save '' &  examples/httpd 8080 &
 *   build/examples/hook_fanout 6380 http://127.0.0.1:8080/ 7000 &
 *   printf 'apple\npear\n' | nc -q1 127.0.0.1 7000
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <loom.h>
#include <loom_hook.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int redis_port;
static const char *url;
static int listen_fd = -1;

/* ---- the two lookups, each on a goroutine of its own */

struct lookup {
    const char *key;
    loom_chan *done; /* each lookup sends one int when it is finished */
    long long count; /* INCR's answer, -1 on error */
    long status;     /* HTTP status, 0 on error */
    size_t bytes;
};

static void redis_lookup(void *arg) {
    struct lookup *l = arg;
    l->count = -1;
    /* one connection per lookup keeps the example short; a real service would pool them */
    redisContext *c = redisConnect("127.0.0.1", redis_port);
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "INCR %s", l->key);
        if (r && r->type == REDIS_REPLY_INTEGER) l->count = r->integer;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    int one = 1;
    loom_send(l->done, &one);
}

static size_t count_bytes(char *p, size_t size, size_t n, void *arg) {
    (void)p;
    *(size_t *)arg += size * n;
    return size * n;
}

static void http_lookup(void *arg) {
    struct lookup *l = arg;
    CURL *h = curl_easy_init();
    if (h) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, count_bytes);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &l->bytes);
        if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &l->status);
        curl_easy_cleanup(h);
    }
    int one = 1;
    loom_send(l->done, &one);
}

/* ---- a connection: lines in, one answer per line */

static void answer(int fd, const char *key) {
    int64_t t0 = loom_now();
    struct lookup l = { .key = key, .done = loom_chan_new(sizeof(int), 2) };
    if (!l.done) return;
    loom_go(redis_lookup, &l); /* both at once */
    loom_go(http_lookup, &l);
    int v;
    loom_recv(l.done, &v);
    loom_recv(l.done, &v); /* (l lives on this stack until both are done) */
    loom_chan_free(l.done);
    char line[512];
    int n = snprintf(line, sizeof line, "%s count=%lld http=%ld bytes=%zu ms=%.1f\n", key, l.count, l.status,
                     l.bytes, (loom_now() - t0) / 1e6);
    if (n > 0 && write(fd, line, (size_t)n) < 0) return; /* a plain blocking write */
}

static void serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    size_t len = 0;
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof buf - 1 - len); /* a plain blocking read */
        if (k <= 0) break;
        len += (size_t)k;
        char *nl;
        while ((nl = memchr(buf, '\n', len))) {
            *nl = 0;
            if (nl > buf && nl[-1] == '\r') nl[-1] = 0;
            if (buf[0]) answer(fd, buf);
            size_t used = (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, len - used);
            len -= used;
        }
        if (len == sizeof buf - 1) break; /* a line too long */
    }
    close(fd);
}

static void on_signal(int sig) {
    (void)sig;
    int fd = listen_fd;
    listen_fd = -1;
    if (fd >= 0) shutdown(fd, SHUT_RDWR); /* wakes the blocked accept */
}

static int main_fn(void *arg) {
    int port = (int)(intptr_t)arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 512) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        perror("hook_fanout: listen");
        return 1;
    }
    listen_fd = fd;
    printf("hook_fanout: listening on 127.0.0.1:%d%s\n", ntohs(a.sin_port),
           loom_hook_active() ? "" : " (LOOM_HOOK=0: every blocking call holds a thread)");
    fflush(stdout);
    for (;;) {
        int c = accept(fd, NULL, NULL); /* a plain blocking accept */
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break; /* shut down by the signal */
        }
        loom_go(serve, (void *)(intptr_t)c);
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s REDIS_PORT URL [PORT]\n", argv[0]);
        return 2;
    }
    redis_port = atoi(argv[1]);
    url = argv[2];
    int port = argc > 3 ? atoi(argv[3]) : 0;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once, before any goroutine uses curl */
    int rc = loom_run(main_fn, (void *)(intptr_t)port);
    curl_global_cleanup();
    return rc;
}
