/*
 * echo.c — a TCP echo server: one goroutine per connection.
 *
 *   echo [PORT]      listens on 127.0.0.1:PORT (else $PORT, else 7000; 0 picks a free port)
 *
 * Prints "echo: listening on 127.0.0.1:PORT" once it accepts connections.  SIGINT or
 * SIGTERM stops it: it closes the listener and exits with status 0.
 *
 * Each connection reads what has arrived (any amount: TCP has no message boundaries) and
 * writes it back.  loom_read and loom_write park the goroutine, not the thread, while the
 * socket is not ready, so ten thousand idle connections are ten thousand parked goroutines
 * on a handful of threads (loom_run lifts the soft RLIMIT_NOFILE to the hard limit, as Go
 * does, so the fds are there too).
 */
#include "server.h"

/* One connection: echo until the client closes it (or an error). */
static void serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = loom_read(fd, buf, sizeof buf);
        if (n <= 0) break;                              /* 0: the client is done; < 0: -errno */
        if (loom_write(fd, buf, (size_t)n) != n) break; /* loom_write writes all n, or fails */
    }
    loom_fd_close(fd);
}

int main(int argc, char **argv) { return server_run(argc, argv, "echo", "7000", serve); }
