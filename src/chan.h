/*
 * chan.h — the channel object, shared by chan.c and select.c (as Go's hchan and sudog).
 */
#ifndef LOOM_CHAN_H
#define LOOM_CHAN_H
#include "internal.h"

/* A goroutine waiting on a channel.  Lives on the waiting goroutine's own stack (no
 * allocation per operation); valid while that goroutine is parked, and removed from every
 * queue before the goroutine returns. */
struct loom__sudog {
    G *g;
    loom__sudog *next, *prev; /* in c->sendq or c->recvq; under c->lock */
    void *elem;               /* value to send / where to receive; may be NULL (recv) */
    loom_chan *c;
    int caseidx;   /* select case index, or -1 */
    bool isselect; /* waker must win g->selectdone first */
    bool success;  /* written by the waker: true = value passed, false = closed */
    uint32_t seq;  /* g->parkseq when enqueued (stale-sudog check) */
};

typedef struct {
    loom__sudog *first, *last;
} loom__waitq;

/* Invariants (as runtime/chan.go):
 *   at least one of sendq and recvq is empty, except for an unbuffered channel with a
 *   single goroutine blocked in select on both sending and receiving;
 *   for a buffered channel: qcount > 0 implies recvq is empty; qcount < dataqsiz implies
 *   sendq is empty.
 * Every field is guarded by lock, except closed and qcount, which the non-blocking fast
 * paths read without it (a stale read only sends them to the locked path or to -EAGAIN,
 * which was true at some instant). */
struct loom_chan {
    loom__spinlock lock;
    uint32_t closed;
    size_t qcount;   /* values in buf */
    size_t dataqsiz; /* capacity */
    size_t elemsize;
    size_t sendx, recvx; /* ring indices */
    loom__waitq recvq, sendq;
    char *buf;
};

loom__sudog *loom__waitq_dequeue(loom__waitq *q);
void loom__waitq_enqueue(loom__waitq *q, loom__sudog *sg);
void loom__waitq_remove(loom__waitq *q, loom__sudog *sg);
void loom__chan_send_to(M *m, loom_chan *c, loom__sudog *sg,
                        const void *ep); /* c locked; unlocks; m: this thread's M or NULL */
void loom__chan_recv_from(M *m, loom_chan *c, loom__sudog *sg,
                          void *ep); /* c locked; unlocks; m: this thread's M or NULL */
void loom__chan_buf_put(loom_chan *c, const void *ep);
void loom__chan_buf_take(loom_chan *c, void *ep);
#endif
