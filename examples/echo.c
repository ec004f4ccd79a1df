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
#include <loom.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int listen_fd;
static int signal_fd;           /* SIGINT and SIGTERM arrive here, as data */

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

static void accept_loop(void *arg) {
    (void)arg;
    for (;;) {
        int fd = loom_accept(listen_fd, NULL, NULL);
        if (fd == -ECANCELED || fd == -EBADF) return;   /* the listener was closed: shutting down */
        if (fd < 0) {
            /* out of fds or memory: wait for connections to end rather than spin */
            fprintf(stderr, "echo: accept: %s\n", strerror(-fd));
            loom_sleep(10 * 1000 * 1000);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!loom_go(serve, (void *)(intptr_t)fd)) {
            fprintf(stderr, "echo: loom_go: %s\n", strerror(errno));
            loom_fd_close(fd);
        }
    }
}

static int server_main(void *arg) {
    (void)arg;
    if (!loom_go(accept_loop, NULL)) {
        perror("echo: loom_go");
        return 1;
    }
    struct signalfd_siginfo si;
    loom_read(signal_fd, &si, sizeof si);  /* parks goroutine 1 until SIGINT or SIGTERM */
    loom_fd_close(listen_fd);              /* wakes the accept loop with -ECANCELED */
    return 0;                              /* loom_run returns; connections are abandoned */
}

int main(int argc, char **argv) {
    const char *port = getenv("PORT");
    if (argc > 1 && argv[1][0] != '-') port = argv[1];
    if (!port || !*port) port = "7000";

    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int one = 1;
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listen_fd, SOMAXCONN) != 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "echo: cannot listen on 127.0.0.1:%s: %s\n", port, strerror(errno));
        return 1;
    }

    /* Blocked here, before loom_run starts its threads, SIGINT and SIGTERM are blocked in
     * every thread: they wait in the signalfd for goroutine 1 to read them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if ((signal_fd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        perror("echo: signalfd");
        return 1;
    }

    printf("echo: listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    int rc = loom_run(server_main, NULL);
    if (rc != 0) fprintf(stderr, "echo: loom_run: %d\n", rc);
    return rc == 0 ? 0 : 1;
}
