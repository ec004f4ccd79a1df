/*
 * loom_hook.h — libloom_hook: blocking libc calls that park goroutines.
 *
 * Linked into a program (pkg-config loom-hook, CMake loom::hook), libloom_hook stands in
 * front of libc's blocking calls (read, write, recv*, send*, accept, connect, poll,
 * select, epoll_wait, the sleeps...) and of those that keep their meaning (fcntl,
 * ioctl(FIONBIO), setsockopt of SO_RCVTIMEO/SO_SNDTIMEO, close, dup2, dup3).  Called from
 * a goroutine on a socket, pipe, FIFO, tty, eventfd, timerfd or epoll fd, such a call
 * parks the goroutine in loom's netpoller, with the blocking semantics the program asked
 * for; anywhere else it is the plain call.  The README ("Blocking libraries on
 * goroutines") says what it covers and where it stops.  Nothing needs calling: this
 * header only lets a program ask whether the hook is on.
 */
#ifndef LOOM_HOOK_H
#define LOOM_HOOK_H

#ifdef __cplusplus
extern "C" {
#endif

/* 1 if the hook is linked in and on (LOOM_HOOK is not 0 and libc's functions were found),
 * else 0.  The build files name this symbol so that a static link pulls the hook in. */
__attribute__((visibility("default"))) int loom_hook_active(void);

#ifdef __cplusplus
}
#endif
#endif /* LOOM_HOOK_H */
