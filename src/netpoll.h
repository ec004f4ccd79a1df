/*
 * netpoll.h — the interface between the poller core (netpoll.c) and its backend
 * (netpoll_epoll.c, chosen by the build).  The core never sees epoll types: the backend
 * translates its events into loom__poll_event (as Redis's ae.c / ae_epoll.c).
 */
#ifndef LOOM_NETPOLL_H
#define LOOM_NETPOLL_H
#include "internal.h"

typedef struct {
    void *ud;   /* what the core registered with the fd */
    int events; /* LOOM_READABLE | LOOM_WRITABLE, and LOOM__POLL_ERR for an error or hang-up
                   (which reports both directions too) */
} loom__poll_event;
enum { LOOM__POLL_ERR = 4 };

/* A poll descriptor: one per fd number (netpoll.c explains the protocol). */
typedef struct loom__pd {
    uintptr_t rg, wg;              /* read / write wait words: 0, READY, WAIT or a G*; atomic */
    uint32_t seq;                  /* bumped by loom_fd_close; atomic */
    uint32_t flags;                /* PD_*: the fd-kind cache and registration; atomic */
    int fd;                        /* fixed */
    uint32_t rdrained;             /* the last read found the socket empty (io.c); atomic, relaxed */
    uint32_t parkseq;              /* bumped by each waiter before it parks; atomic */
    uint32_t sm_seen, sm_verified; /* sysmon's last look at parkseq (netpoll_verify): sysmon only */
} loom__pd;
enum {
    PD_KNOWN = 1,      /* the kind bits below are valid */
    PD_BLOCKING = 2,   /* a regular file (or one epoll refused): the blocking path */
    PD_SOCKET = 4,     /* a socket: its calls pass MSG_DONTWAIT */
    PD_REG = 8,        /* registered with the backend (as far as loom knows) */
    PD_INQ_TRIED = 16, /* TCP_INQ was asked for (io.c) */
    PD_INQ = 32,       /* ...and granted: reads learn how much is left queued */
    PD_ERR = 64,       /* the poller saw an error or hang-up on it (a reset): io.c reads on */
};

loom__pd *loom__pd_get(int fd);     /* NULL if fd is out of range or no memory */
int loom__pd_prepare(loom__pd *pd); /* flags, or -errno; sets O_NONBLOCK on pollable fds */
void loom__pd_forget(loom__pd *pd);
bool loom__pd_take_read_edge(loom__pd *pd);
int loom__fd_nonblock(int fd); /* sets O_NONBLOCK; 0 (it was set), 1 (now it is) or -errno */
int loom__netpoll_wait(loom__pd *pd, int modes, int64_t ns);
void loom__netpoll_close(loom__pd *pd);

int loom__pollb_init(void);
void loom__pollb_term(void);
int loom__pollb_add(int fd, void *ud); /* edge-triggered, read and write; 0 or -errno */
int loom__pollb_del(int fd);
/* Waits up to ns (< 0 forever, 0 poll); returns the number of events, a break counts as 0 */
int loom__pollb_wait(int64_t ns, loom__poll_event *ev, int max);
void loom__pollb_break(void);
#endif
