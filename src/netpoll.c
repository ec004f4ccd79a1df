/*
 * netpoll.c — the poller as the scheduler sees it (runtime/netpoll.go).
 *
 * Every fd number loom has waited on has a poll descriptor (loom__pd, Go's pollDesc) in a
 * table indexed by fd.  Descriptors are never freed while the runtime runs: the number is
 * reused with the fd, so a late event for a closed fd at worst wakes a waiter spuriously
 * (waiters always retry their I/O).  The backend registers each fd once, edge-triggered,
 * for both directions, with the descriptor as its user data.
 *
 * Each direction has a wait word, rg (read) and wg (write), as Go's pollDesc:
 *   0         nothing happened, nobody waits
 *   PD_READY  an edge arrived that no waiter consumed yet
 *   PD_WAIT   a goroutine is about to park here (it owns the word until it publishes)
 *   a G*      that goroutine is parked here
 * The poller (netpollunblock) turns 0 into PD_READY, or takes a parked G out (leaving
 * PD_READY for it to find) and readies it.  A parked G may also be woken by its deadline
 * timer or by loom_fd_close; all wakers claim the G with CAS(&g->selectdone, 0, 1) first,
 * exactly as channel wakers claim a select, so it is readied once.  A goroutine may wait on
 * both words at once (loom_fd_wait with both events): whichever waker claims it wins, and
 * on waking it takes itself out of both words.
 *
 * Closing: loom_fd_close bumps pd->seq, then takes any parked G out of both words; a waiter
 * compares the seq it started with after publishing itself (Dekker with the closer's
 * order: seq first, then the words) and after waking, and returns -ECANCELED.
 *
 * The fd-kind cache (pd->flags) remembers whether an fd is a socket, another pollable fd
 * (pipe, tty), or a regular file that takes the blocking path.  A program that close()s an
 * fd behind loom's back and gets the number again for another file makes it stale, and
 * loom copes: the registration is re-added before each park (EEXIST: still registered);
 * socket I/O passes MSG_DONTWAIT, so it never depends on O_NONBLOCK (a socket call on what
 * is now a pipe fails with ENOTSOCK and refreshes the cache); other fds get O_NONBLOCK
 * checked before each call; a stale "regular file" makes a blocking call in a blocking
 * section, which costs a thread, not progress.  loom_accept and loom_fd_close refresh it.
 */
#include "netpoll.h"
#include <fcntl.h>
#include <sys/stat.h>

#define PD_READY ((uintptr_t)1)
#define PD_WAIT  ((uintptr_t)2)

#define PD_CHUNK_BITS 12
#define PD_CHUNK      (1 << PD_CHUNK_BITS)
#define PD_CHUNKS     1024                 /* fds below 4M */

static loom__pd *pdtab[PD_CHUNKS];         /* chunks, installed with CAS, freed at term */
static uint32_t nwaiters;                  /* goroutines parked on fds; atomic */

int loom__netpoll_init(void) { STORE(&nwaiters, 0); return loom__pollb_init(); }

void loom__netpoll_term(void) {
    loom__pollb_term();
    for (int i = 0; i < PD_CHUNKS; i++) {
        free(pdtab[i]);
        pdtab[i] = NULL;
    }
}

void loom__netpoll_break(void) { loom__pollb_break(); }
bool loom__netpoll_has_waiters(void) { return LOAD(&nwaiters) != 0; }

loom__pd *loom__pd_get(int fd) {
    if (fd < 0 || fd >= PD_CHUNK * PD_CHUNKS) return NULL;
    loom__pd **slot = &pdtab[fd >> PD_CHUNK_BITS];
    loom__pd *chunk = LOAD_ACQ(slot);
    if (!chunk) {
        loom__pd *fresh = calloc(PD_CHUNK, sizeof *fresh);
        if (!fresh) return NULL;
        for (int i = 0; i < PD_CHUNK; i++) fresh[i].fd = (fd & ~(PD_CHUNK - 1)) + i;
        if (CAS(slot, NULL, fresh)) chunk = fresh;
        else { free(fresh); chunk = LOAD_ACQ(slot); }
    }
    return &chunk[fd & (PD_CHUNK - 1)];
}

/* Classifies fd once: a socket, pipe or tty goes through the poller (switched to
 * O_NONBLOCK here); a regular file, directory or block device takes the blocking path. */
int loom__pd_prepare(loom__pd *pd) {
    uint32_t f = LOAD_RLX(&pd->flags);
    if (f & PD_KNOWN) return (int)f;
    struct stat st;
    if (fstat(pd->fd, &st) < 0) return -errno;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode)) {
        f = PD_KNOWN | PD_BLOCKING;
    } else {
        int r = loom__fd_nonblock(pd->fd);
        if (r < 0) return r;
        f = PD_KNOWN | (S_ISSOCK(st.st_mode) ? PD_SOCKET : 0);
    }
    STORE_RLX(&pd->flags, f);
    return (int)f;
}

int loom__fd_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    return 0;
}

void loom__pd_forget(loom__pd *pd) { STORE_RLX(&pd->flags, 0); }

/* Takes whatever waits on *gpp out and returns the G to ready, if any (runtime.netpollunblock).
 * ioready: an edge arrived (leave PD_READY); else (close) just empty the word. */
static G *netpollunblock(uintptr_t *gpp, bool ioready) {
    for (;;) {
        uintptr_t old = LOAD(gpp);
        if (old == PD_READY) return NULL;
        if (old == 0 && !ioready) return NULL;
        uintptr_t nw = ioready ? PD_READY : 0;
        if (old == PD_WAIT) nw = ioready ? PD_READY : PD_WAIT;   /* the waiter sees READY before parking */
        if (!CAS(gpp, old, nw)) continue;
        if (old == 0 || old == PD_WAIT) return NULL;
        G *g = (G *)old;
        /* claim it: its deadline or the other direction may have got there first */
        if (!CAS(&g->selectdone, 0, 1)) return NULL;
        return g;
    }
}

G *loom__netpoll(int64_t ns) {
    loom__poll_event ev[128];
    int n = loom__pollb_wait(ns, ev, 128);
    G *list = NULL;
    for (int i = 0; i < n; i++) {
        loom__pd *pd = ev[i].ud;
        G *g;
        if ((ev[i].events & LOOM_READABLE) && (g = netpollunblock(&pd->rg, true))) {
            g->param = pd;
            g->schedlink = list;
            list = g;
        }
        if ((ev[i].events & LOOM_WRITABLE) && (g = netpollunblock(&pd->wg, true))) {
            g->param = pd;
            g->schedlink = list;
            list = g;
        }
    }
    return list;
}

/* ------------------------------------------------------------------ waiting on an fd */

struct pdwait {
    loom__pd *pd;
    uintptr_t *gpp[2];
    int n;
    uint32_t seq;
};

/* The "after switch" hook of a parking fd waiter (runtime.netpollblockcommit): publish the
 * G in its words; if an edge or a close came first, wake it at once. */
static void pd_commit(G *g, void *arg) {
    struct pdwait *w = arg;        /* on g's stack: g waits in loom__park_timeout until this hook ends */
    loom__pd *pd = w->pd;
    uint32_t seq = w->seq;
    uintptr_t *gpp[2] = { w->gpp[0], w->gpp[1] };
    int n = w->n;
    bool wake = false;
    for (int i = 0; i < n; i++)
        if (!CAS(gpp[i], PD_WAIT, (uintptr_t)g)) wake = true;
    if (!wake && LOAD(&pd->seq) != seq) wake = true;     /* closed while we parked */
    if (wake && CAS(&g->selectdone, 0, 1)) {
        g->param = pd;
        loom__ready(g);
    }
}

/* Parks the calling goroutine until fd is ready in any of `modes` (LOOM_READABLE/WRITABLE),
 * the deadline passes (ns < 0: none) or the fd is closed with loom_fd_close.
 * Returns the modes seen ready (> 0; may be spurious, the caller retries its I/O),
 * -ETIMEDOUT, -ECANCELED, -EBUSY (another goroutine already waits on the same fd and
 * direction) or a registration error (-EBADF, -EPERM for fds epoll cannot watch). */
int loom__netpoll_wait(loom__pd *pd, int modes, int64_t ns) {
    struct pdwait w = { .pd = pd, .n = 0, .seq = LOAD(&pd->seq) };
    int r = loom__pollb_add(pd->fd, pd);
    if (r < 0 && r != -EEXIST) return r;
    if (modes & LOOM_READABLE) w.gpp[w.n++] = &pd->rg;
    if (modes & LOOM_WRITABLE) w.gpp[w.n++] = &pd->wg;
    int64_t deadline = ns > 0 ? loom__nanotime() + ns : ns;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < w.n; i++)
            if (CAS(w.gpp[i], PD_READY, 0)) ready |= w.gpp[i] == &pd->rg ? LOOM_READABLE : LOOM_WRITABLE;
        if (ready) return ready;
        if (LOAD(&pd->seq) != w.seq) return -ECANCELED;
        if (deadline == 0) return -ETIMEDOUT;
        int64_t left = -1;
        if (deadline > 0) {
            left = deadline - loom__nanotime();
            if (left <= 0) return -ETIMEDOUT;
        }
        int claimed = 0;
        for (; claimed < w.n; claimed++)
            if (!CAS(w.gpp[claimed], 0, PD_WAIT)) break;
        if (claimed < w.n) {
            uintptr_t v = LOAD(w.gpp[claimed]);
            for (int i = 0; i < claimed; i++) CAS(w.gpp[i], PD_WAIT, 0);
            if (v == PD_READY) continue;          /* an edge arrived meanwhile */
            return -EBUSY;
        }
        G *g = loom__getm()->curg;      /* a goroutine: poller_pd checked */
        STORE(&g->selectdone, 0);
        g->param = NULL;
        XADD(&nwaiters, 1);
        loom__park_timeout(pd_commit, &w, WAIT_IO, left);
        XADD(&nwaiters, -1);
        /* Take ourselves out of the words (still there if the deadline or the other
         * direction woke us).  Only ourselves: once the fd is closed its number may already
         * belong to a new file with a new waiter in these words.  An edge left there is
         * ours unless the fd was closed. */
        bool closed = LOAD(&pd->seq) != w.seq;
        for (int i = 0; i < w.n; i++) {
            CAS(w.gpp[i], (uintptr_t)g, 0);
            if (!closed && CAS(w.gpp[i], PD_READY, 0))
                ready |= w.gpp[i] == &pd->rg ? LOOM_READABLE : LOOM_WRITABLE;
        }
        if (closed) return -ECANCELED;
        if (ready) return ready;
        /* woken by the deadline or a close (checked at the top), or spuriously: go round */
    }
}

/* Wakes every goroutine parked on pd with -ECANCELED (the close half of runtime.netpollclose
 * plus poll_runtime_pollUnblock). */
void loom__netpoll_close(loom__pd *pd) {
    XADD(&pd->seq, 1);
    G *g;
    if ((g = netpollunblock(&pd->rg, false))) { g->param = pd; loom__ready(g); }
    if ((g = netpollunblock(&pd->wg, false))) { g->param = pd; loom__ready(g); }
    loom__pollb_del(pd->fd);
    loom__pd_forget(pd);
}
