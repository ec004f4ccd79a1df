/*
 * hook_installed.c — built by tests/install.sh against an installed libloom_hook (pkg-config
 * loom-hook, shared and static; CMake loom::hook): a goroutine's plain read() of a blocking
 * socket parks it while another goroutine sleeps in usleep() and then writes.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <loom.h>
#include <loom_hook.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sv[2];

static void writer(void *arg)
{
    (void)arg;
    usleep(20000);
    if (write(sv[1], "hello", 5) != 5)
        perror("write");
}

static int main_fn(void *arg)
{
    (void)arg;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    loom_go(writer, NULL);
    char buf[16];
    ssize_t n = read(sv[0], buf, sizeof buf);
    struct loom_stats st;
    loom_stats(&st);
    /* parked in the netpoller: the kernel's flag is set, the program still sees blocking */
    long kernel = syscall(SYS_fcntl, sv[0], F_GETFL) & O_NONBLOCK, view = fcntl(sv[0], F_GETFL) & O_NONBLOCK;
    printf("hello from loom-hook: active=%d read=%zd kernel_nonblock=%d view_nonblock=%d spare_lends=%llu\n",
           loom_hook_active(), n, kernel != 0, view != 0, (unsigned long long)st.spare_lends);
    close(sv[0]);
    close(sv[1]);
    return 0;
}

int main(void)
{
    return loom_run(main_fn, NULL);
}
