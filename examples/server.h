/*
 * server.h — what echo.c and httpd.c share: listening on 127.0.0.1, an accept loop that
 * starts a goroutine per connection, and a clean stop on SIGINT or SIGTERM.
 *
 *   return server_run(argc, argv, "echo", "7000", serve);
 *
 * listens on 127.0.0.1:PORT (argv[1], else $PORT, else the default; 0 picks a free port),
 * prints "NAME: listening on 127.0.0.1:PORT", and runs serve(fd) in a goroutine for each
 * connection (serve closes fd).  SIGINT or SIGTERM closes the listener and returns 0.
 * Header-only: each example is one program, and this file is included once.
 */
#ifndef LOOM_EXAMPLE_SERVER_H
#define LOOM_EXAMPLE_SERVER_H
#include <loom.h>
#include <arpa/inet.h>
#include <errno.h>
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

static struct {
    const char *name;
    void (*serve)(void *fd);
    int listen_fd;
    int signal_fd; /* SIGINT and SIGTERM arrive here, as data */
} server;

static void server_accept_loop(void *arg) {
    (void)arg;
    for (;;) {
        int fd = loom_accept(server.listen_fd, NULL, NULL);
        if (fd == -ECANCELED || fd == -EBADF) return; /* the listener was closed: shutting down */
        if (fd < 0) {
            /* out of fds or memory: wait for connections to end rather than spin */
            fprintf(stderr, "%s: accept: %s\n", server.name, strerror(-fd));
            loom_sleep(10 * 1000 * 1000);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!loom_go(server.serve, (void *)(intptr_t)fd)) {
            fprintf(stderr, "%s: loom_go: %s\n", server.name, strerror(errno));
            loom_fd_close(fd);
        }
    }
}

static int server_main(void *arg) {
    (void)arg;
    if (!loom_go(server_accept_loop, NULL)) {
        fprintf(stderr, "%s: loom_go: %s\n", server.name, strerror(errno));
        return 1;
    }
    struct signalfd_siginfo si;
    loom_read(server.signal_fd, &si, sizeof si); /* parks goroutine 1 until SIGINT or SIGTERM */
    loom_fd_close(server.listen_fd);             /* wakes the accept loop with -ECANCELED */
    return 0;                                    /* loom_run returns; connections are abandoned */
}

static int server_run(int argc, char **argv, const char *name, const char *default_port,
                      void (*serve)(void *fd)) {
    server.name = name;
    server.serve = serve;
    const char *port = getenv("PORT");
    if (argc > 1 && argv[1][0] != '-') port = argv[1];
    if (!port || !*port) port = default_port;

    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons((uint16_t)atoi(port)),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    server.listen_fd = fd;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "%s: cannot listen on 127.0.0.1:%s: %s\n", name, port, strerror(errno));
        return 1;
    }

    /* Blocked here, before loom_run starts its threads, SIGINT and SIGTERM are blocked in
     * every thread: they wait in the signalfd for goroutine 1 to read them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if ((server.signal_fd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", name, strerror(errno));
        return 1;
    }

    printf("%s: listening on 127.0.0.1:%d\n", name, ntohs(addr.sin_port));
    fflush(stdout);
    int rc = loom_run(server_main, NULL);
    if (rc != 0) fprintf(stderr, "%s: loom_run: %d\n", name, rc);
    return rc == 0 ? 0 : 1;
}
#endif
