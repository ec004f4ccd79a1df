/*
 * netpoll.c — the poller as the scheduler sees it (runtime/netpoll.go).
 *
 * findrunnable asks it for goroutines whose fds became ready, without blocking while work
 * may exist and blocking (one M at a time, until the next timer) when every P is idle.
 * The fd side (goroutines waiting on sockets: loom_fd_wait, loom_read, ...) plugs in here
 * through loom__netpoll_has_waiters and the events the backend returns.
 */
#include "netpoll.h"

static uint32_t nwaiters;      /* goroutines parked on fds; atomic */

int loom__netpoll_init(void) { STORE(&nwaiters, 0); return loom__pollb_init(); }
void loom__netpoll_term(void) { loom__pollb_term(); }
void loom__netpoll_break(void) { loom__pollb_break(); }
bool loom__netpoll_has_waiters(void) { return LOAD(&nwaiters) != 0; }

G *loom__netpoll(int64_t ns) {
    loom__poll_event ev[128];
    int n = loom__pollb_wait(ns, ev, 128);
    G *list = NULL;
    for (int i = 0; i < n; i++) {
        (void)ev[i];     /* fd waiters arrive with the I/O layer */
    }
    return list;
}
