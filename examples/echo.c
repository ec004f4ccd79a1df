/*
 * echo.c — a TCP echo server: one goroutine per connection.
 *
 *   echo [PORT]      listens on 127.0.0.1:PORT (else $PORT, else 7000; 0 picks a free port)
 *
 * Prints "echo: listening on 127.0.0.1:PORT" once it accepts connections.
 *
 * Each connection reads what has arrived (any amount: TCP has no message boundaries) and
 * writes it back.  loom_read and loom_write park the goroutine, not the thread, while the
 * socket is not ready, so ten thousand idle connections are ten thousand parked goroutines
 * on a handful of threads (loom_run lifts the soft RLIMIT_NOFILE to the hard limit, as Go
 * does, so the fds are there too).
 *
 * Deadlines and shutdown (server.h has the options): a connection that sends nothing for
 * IDLE_TIMEOUT is closed, and one that does not read its echo within WRITE_TIMEOUT is cut.
 * SIGINT or SIGTERM stops accepting and closes idle connections; bytes already read are
 * echoed before their connection closes, unless SHUTDOWN_GRACE runs out first.  Exit
 * status 0.
 */
#include "server.h"

/* One connection: echo until the client closes it, a deadline, or a shutdown. */
static void serve(int fd) {
    char buf[16384];
    int cut = 0;
    /* nothing in flight: wait for bytes until IDLE_TIMEOUT after the last echo, or a shutdown */
    server_deadline idle = { .parent = server.stop, .at = loom_now() + server.idle_timeout };
    for (;;) {
        ssize_t n = server_read(&idle, fd, buf, sizeof buf);
        if (n <= 0) break; /* 0: the client is done; < 0: -errno */
        /* n bytes in flight: echo them all by WRITE_TIMEOUT, or the grace period's end */
        if (server_write(server.halt, server.write_timeout, fd, buf, (size_t)n) != n) {
            cut = 1;
            break;
        }
        if (server_stopping()) break; /* shutting down: what was in flight is done */
        idle.at = loom_now() + server.idle_timeout;
    }
    loom_ctx_free(idle.ctx);
    server_close(fd, cut);
}

int main(int argc, char **argv) { return server_run(argc, argv, "echo", "7000", serve); }
