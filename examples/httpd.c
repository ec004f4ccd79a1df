/*
 * httpd.c — an HTTP/1.1 "hello" server: one goroutine per connection, keep-alive, pipelining.
 *
 *   httpd [PORT]     listens on 127.0.0.1:PORT (else $PORT, else 8080; 0 picks a free port)
 *
 * GET / (and HEAD /) answers "Hello, World!\n"; other paths get 404, other methods 405, and
 * a request that is not HTTP/1.0 or 1.1 gets 400 and the connection is closed.  HTTP/1.1
 * connections stay open unless the client sends "Connection: close"; HTTP/1.0 ones close
 * unless it sends "Connection: keep-alive".  Every answer carries Content-Length, so a
 * client can tell a whole one from a cut one.  Prints "httpd: listening on 127.0.0.1:PORT"
 * once it accepts connections.
 *
 * Deadlines and shutdown (server.h has the options): a request must arrive within
 * READ_TIMEOUT and its answer be written within WRITE_TIMEOUT, else the connection is cut;
 * a keep-alive connection idle for IDLE_TIMEOUT is closed.  SIGINT or SIGTERM stops
 * accepting and closes idle connections; a connection with a request in flight gets its
 * answer, with "Connection: close", unless SHUTDOWN_GRACE runs out first.  Exit status 0.
 *
 * Each connection reads into a buffer that may hold part of a request or several pipelined
 * ones, answers every complete request in it, then writes all those answers with one
 * loom_write.  Nothing is allocated per request or per connection but the deadlines'
 * contexts: the buffers live on the goroutine's stack, and untouched stack pages cost no
 * memory.
 */
#define _GNU_SOURCE /* memmem */
#include "server.h"
#include <strings.h>
#include <time.h>

/* ---- the answers: their status line and fixed headers are formatted once, at start */
struct reply {
    int status;
    const char *reason, *extra_headers, *body;
    char head[192];
    size_t head_len, body_len;
};
enum { R200, R404, R405, R400, R431, R501, NREPLIES };
static struct reply replies[NREPLIES] = {
    [R200] = { .status = 200, .reason = "OK", .body = "Hello, World!\n" },
    [R404] = { .status = 404, .reason = "Not Found", .body = "Not Found\n" },
    [R405] = { .status = 405,
               .reason = "Method Not Allowed",
               .body = "Method Not Allowed\n",
               .extra_headers = "Allow: GET, HEAD\r\n" },
    [R400] = { .status = 400, .reason = "Bad Request", .body = "Bad Request\n" },
    [R431] = { .status = 431,
               .reason = "Request Header Fields Too Large",
               .body = "Request Header Fields Too Large\n" },
    [R501] = { .status = 501, .reason = "Not Implemented", .body = "Not Implemented\n" }, /* chunked bodies */
};

static void replies_init(void) {
    for (int i = 0; i < NREPLIES; i++) {
        struct reply *r = &replies[i];
        r->body_len = strlen(r->body);
        r->head_len = (size_t)snprintf(
                r->head, sizeof r->head,
                "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n%s",
                r->status, r->reason, r->body_len, r->extra_headers ? r->extra_headers : "");
    }
}

/* ---- one connection's state: lives on its goroutine's stack */
enum { IN_SIZE = 8192, OUT_SIZE = 8192 };
struct conn {
    int fd;
    size_t in_len, out_len;
    time_t date_sec; /* the second `date` was formatted for */
    size_t date_len;
    char date[64];      /* "Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n" */
    char in[IN_SIZE];   /* received bytes not consumed yet */
    char out[OUT_SIZE]; /* answers not written yet */
};

/* HTTP requires a Date header; time() is cheap, formatting it once a second is enough. */
static void refresh_date(struct conn *c) {
    time_t now = time(NULL);
    if (now == c->date_sec) return;
    struct tm tm;
    gmtime_r(&now, &tm);
    c->date_sec = now;
    c->date_len = strftime(c->date, sizeof c->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* Writes the queued answers, within WRITE_TIMEOUT (or until the grace period ends). */
static int flush(struct conn *c) {
    ssize_t n = server_write(server.halt, server.write_timeout, c->fd, c->out, c->out_len);
    int ok = n == (ssize_t)c->out_len;
    c->out_len = 0;
    return ok ? 0 : -1;
}

static void append(struct conn *c, const char *s, size_t n) {
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Queues one answer in c->out (writing out what is queued first if it would not fit). */
static int respond(struct conn *c, const struct reply *r, int http10, int keep_alive, int head_only) {
    static const char close_hdr[] = "Connection: close\r\n", keep_hdr[] = "Connection: keep-alive\r\n";
    if (c->out_len + r->head_len + sizeof keep_hdr + c->date_len + 2 + r->body_len > OUT_SIZE &&
        flush(c) != 0)
        return -1;
    append(c, r->head, r->head_len);
    if (!keep_alive) append(c, close_hdr, sizeof close_hdr - 1);
    else if (http10) /* 1.0 closes by default: say we don't */ append(c, keep_hdr, sizeof keep_hdr - 1);
    append(c, c->date, c->date_len);
    append(c, "\r\n", 2);
    if (!head_only) append(c, r->body, r->body_len);
    return 0;
}

/* ---- parsing one request head (request line and headers, ending with an empty line) */
struct request {
    const char *path;
    size_t path_len; /* without its ?query */
    int get, head;   /* the method is GET, HEAD (else: 405) */
    int http10, keep_alive, chunked;
    size_t body_len; /* Content-Length */
};

/* Is `tok` one of the comma-separated items of the header value v[0..n)? (case-insensitive) */
static int has_token(const char *v, size_t n, const char *tok) {
    size_t tl = strlen(tok);
    for (const char *end = v + n; v < end;) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
        const char *e = v;
        while (e < end && *e != ',') e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - v) == tl && strncasecmp(v, tok, tl) == 0) return 1;
        v = e;
    }
    return 0;
}

static int is_header(const char *name, size_t n, const char *want) {
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

/* p[0..n) is a request head including its final "\r\n\r\n".  0, or -1 if malformed. */
static int parse(const char *p, size_t n, struct request *r) {
    const char *end = p + n, *eol = memchr(p, '\r', n); /* found: the head ends in \r\n */
    if (eol[1] != '\n') return -1;

    /* request line: METHOD SP /path SP HTTP/1.x */
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || sp1 == p || !sp2 || sp1[1] != '/' || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    for (const char *m = p; m < sp1; m++)
        if (*m < 'A' || *m > 'Z') return -1;
    r->get = sp1 - p == 3 && memcmp(p, "GET", 3) == 0;
    r->head = sp1 - p == 4 && memcmp(p, "HEAD", 4) == 0;
    r->path = sp1 + 1;
    const char *q = memchr(r->path, '?', (size_t)(sp2 - r->path));
    r->path_len = (size_t)((q ? q : sp2) - r->path);
    r->http10 = sp2[8] == '0';
    r->keep_alive = !r->http10;
    r->chunked = 0;
    r->body_len = 0;

    /* headers: Name: value, until the empty line */
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end - line));
        if (eol[1] != '\n') return -1;
        if (eol == line) return 0; /* the empty line: done */
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (!colon || colon == line) return -1;
        for (const char *c = line; c < colon; c++)
            if (*c <= ' ' || *c > '~') return -1; /* no spaces, controls in names */
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t nl = (size_t)(colon - line), vl = (size_t)(ve - v);
        if (is_header(line, nl, "connection")) {
            if (has_token(v, vl, "close")) r->keep_alive = 0;
            else if (has_token(v, vl, "keep-alive")) r->keep_alive = 1;
        } else if (is_header(line, nl, "content-length")) {
            size_t len = 0;
            if (vl == 0 || vl > 15) return -1;
            for (const char *d = v; d < ve; d++) {
                if (*d < '0' || *d > '9') return -1;
                len = len * 10 + (size_t)(*d - '0');
            }
            r->body_len = len;
        } else if (is_header(line, nl, "transfer-encoding")) {
            r->chunked = 1;
        }
    }
    return -1; /* not reached */
}

/* Which answer a request gets (the one the buffer holds at p[0..n)). */
static const struct reply *route(const char *p, size_t n, struct request *r) {
    if (parse(p, n, r) != 0) {
        *r = (struct request){ 0 }; /* not HTTP: answer 400 and close */
        return &replies[R400];
    }
    if (r->chunked) {
        r->keep_alive = 0; /* we cannot find where its body ends */
        return &replies[R501];
    }
    if (!r->get && !r->head) return &replies[R405];
    return &replies[r->path_len == 1 ? R200 : R404]; /* the path starts with '/' */
}

/* We close first: send EOF, then read what the client may still send until it closes too
 * (at most 1 s).  Closing with unread bytes would reset the connection, and the client
 * could lose our last answer. */
static void close_gracefully(int fd) {
    char junk[512];
    int64_t deadline = loom_now() + 1000 * 1000 * 1000;
    shutdown(fd, SHUT_WR);
    for (int64_t left; (left = deadline - loom_now()) > 0;)
        if (loom_fd_wait(fd, LOOM_READABLE, left) < 0 || loom_read(fd, junk, sizeof junk) <= 0) break;
    loom_fd_close(fd);
}

static void serve(int fd) {
    struct conn c; /* not `= { ... }`: that would zero 16 KiB of buffers */
    c.fd = fd;
    c.in_len = c.out_len = c.date_len = 0;
    c.date_sec = -1;
    size_t skip = 0; /* body bytes of the last request still to discard */
    int closing = 0;
    /* Waiting for a request with nothing in flight (idle), a shutdown closes the connection
     * at once; the first request must begin within READ_TIMEOUT of the accept, a later one
     * within IDLE_TIMEOUT of the last answer.  Once begun, a request has READ_TIMEOUT to
     * arrive whole (req), and only the end of the grace period cuts that short. */
    server_deadline idle = { .parent = server.stop, .at = loom_now() + server.read_timeout };
    loom_ctx *req = NULL;
    while (!closing) {
        ssize_t n;
        if (!req) {
            n = server_read(&idle, c.fd, c.in + c.in_len, IN_SIZE - c.in_len);
        } else {
            loom_ctx *old = loom_ctx_set(req);
            n = loom_read(c.fd, c.in + c.in_len, IN_SIZE - c.in_len);
            loom_ctx_set(old);
        }
        if (n <= 0) { /* the client closed, an error, or a deadline */
            loom_ctx_free(idle.ctx);
            loom_ctx_free(req);
            server_close(c.fd, req && n < 0);
            return;
        }
        c.in_len += (size_t)n;
        refresh_date(&c);

        /* answer every complete request in the buffer */
        size_t pos = 0;
        int answered = 0;
        while (!closing) {
            size_t k = skip < c.in_len - pos ? skip : c.in_len - pos;
            pos += k;
            skip -= k;
            while (c.in_len - pos >= 2 && c.in[pos] == '\r' && c.in[pos + 1] == '\n')
                pos += 2; /* blank lines between requests are allowed */
            char *e = memmem(c.in + pos, c.in_len - pos, "\r\n\r\n", 4);
            if (!e) {
                if (pos == 0 && c.in_len == IN_SIZE) { /* a head that fills the buffer */
                    closing = 1;
                    if (respond(&c, &replies[R431], 0, 0, 0) != 0) goto cut;
                }
                break; /* wait for the rest of this request */
            }
            size_t len = (size_t)(e + 4 - (c.in + pos));
            struct request r;
            const struct reply *rep = route(c.in + pos, len, &r);
            pos += len;
            skip = r.body_len; /* the body (if any) is read and ignored */
            answered = 1;
            if (server_stopping()) r.keep_alive = 0; /* shutting down: this is the last answer */
            closing = !r.keep_alive;
            if (respond(&c, rep, r.http10, r.keep_alive, r.head) != 0) goto cut;
        }
        memmove(c.in, c.in + pos, c.in_len - pos);
        c.in_len -= pos;
        if (c.out_len && flush(&c) != 0) goto cut; /* one write for them all */

        /* a request begun (part of a head, or a body to skip) must arrive by its deadline */
        if (answered) {
            loom_ctx_free(req);
            req = NULL;
            idle.at = loom_now() + server.idle_timeout;
        }
        if ((c.in_len || skip) && !req && !(req = loom_ctx_with_timeout(server.halt, server.read_timeout)))
            goto cut;
    }
    loom_ctx_free(idle.ctx);
    loom_ctx_free(req);
    close_gracefully(c.fd);
    return;
cut: /* an answer could not be written whole (or no memory for a deadline) */
    loom_ctx_free(idle.ctx);
    loom_ctx_free(req);
    server_close(c.fd, 1);
}

int main(int argc, char **argv) {
    replies_init();
    return server_run(argc, argv, "httpd", "8080", serve);
}
