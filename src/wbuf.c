/*
 * wbuf.c — buffered writes to a file descriptor without stdio, and small-file reads.
 *
 * The goroutine dump (fatal.c) runs in fatal paths and signal handlers, where stdio may be
 * locked by the dying thread; the trace writer (trace.c) formats thousands of events per
 * flush.  Both fill a caller-owned buffer and write(2) it when full; nothing allocates.
 * loom__read_small serves the sysfs/cgroup readers (cpus.c, topo.c).
 */
#include "internal.h"
#include <fcntl.h>
#include <unistd.h>

void loom__wb_flush(loom__wbuf *w) {
    size_t off = 0;
    while (off < w->n) {
        ssize_t r = write(w->fd, w->buf + off, w->n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* a full disk or a closed fd: the rest is lost */
        off += (size_t)r;
    }
    w->n = 0;
}

void loom__wb_str(loom__wbuf *w, const char *s) {
    for (; *s; s++) {
        if (w->n == w->cap) loom__wb_flush(w);
        w->buf[w->n++] = *s;
    }
}

void loom__wb_u64(loom__wbuf *w, uint64_t v) {
    char t[24];
    int i = sizeof t - 1;
    t[i] = 0;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    loom__wb_str(w, t + i);
}

void loom__wb_i64(loom__wbuf *w, int64_t v) {
    if (v < 0) {
        loom__wb_str(w, "-");
        loom__wb_u64(w, (uint64_t)-v);
    } else loom__wb_u64(w, (uint64_t)v);
}

ssize_t loom__read_small(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n < size - 1) {
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}
