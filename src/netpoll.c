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
 *   PD_WAIT   a goroutine is about to park here (it owns the word until it publishes),
 *             tagged with pd->seq as it was when its wait began (pd_wait(seq))
 *   a G*      that goroutine is parked here (g->waitseq: the seq its wait began with)
 * The poller (netpollunblock) turns 0 into PD_READY, or takes a parked G out (leaving
 * PD_READY for it to find) and readies it.  A parked G may also be woken by its deadline
 * timer or by loom_fd_close; all wakers claim the G with CAS(&g->selectdone, 0, 1) first,
 * exactly as channel wakers claim a select, so it is readied once.  A goroutine may wait on
 * both words at once (loom_fd_wait with both events): whichever waker claims it wins, and
 * on waking it takes itself out of both words.
 *
 * Closing: loom_fd_close bumps pd->seq, then takes any parked G out of both words; a waiter
 * compares the seq it started with after publishing itself (Dekker with the closer's
 * order: seq first, then the words) and after waking, and returns -ECANCELED.  The number
 * may belong to a new file at once, with a new waiter: what an old wait left in a word
 * (PD_WAIT or a G with an older seq) is on its way out, and the new waiter takes it out
 * itself (a claimed PD_WAIT makes its owner's publish fail, so it wakes and sees the close;
 * a stale G is claimed and readied as the closer would), so it never reads as busy.
 *
 * The fd-kind cache (pd->flags) remembers whether an fd is a socket, another pollable fd
 * (pipe, tty), or a regular file that takes the blocking path, and whether loom has
 * registered it (PD_REG).  A program that close()s an fd behind loom's back and gets the
 * number again for another file makes it stale, and loom copes:
 *  - socket I/O passes MSG_DONTWAIT, so it never depends on O_NONBLOCK (a socket call on
 *    what is now a pipe fails with ENOTSOCK and refreshes the cache); other fds get
 *    O_NONBLOCK checked before each call; a stale "regular file" makes a blocking call in
 *    a blocking section, which costs a thread, not progress;
 *  - the registration: closing the last fd of a file takes it out of the epoll set, so the
 *    new file under the number is not registered though PD_REG says it is.  Asking the
 *    kernel before every park would cost a system call per park (an epoll_ctl, ~1.2 us
 *    here, a tenth of an HTTP request's server time), so a waiter trusts PD_REG, and
 *    sysmon wakes every waiter it finds parked at two looks in a row, once per wait, to
 *    re-add its registration (loom__netpoll_verify, every 5 ms or so): EEXIST means it was
 *    fine; success means it was stale, and the edge-triggered add reports the fd's state
 *    at once.  So a wait on a number reused behind loom's back may take ~10 ms longer; it
 *    never hangs.
 * loom_accept and loom_fd_close refresh the cache.
 */
#include "netpoll.h"
#include <fcntl.h>
#include <sys/stat.h>

#define PD_READY ((uintptr_t)1)
#define PD_WAIT  ((uintptr_t)2) /* with the low two bits: pd_wait(seq) */

static inline uintptr_t pd_wait(uint32_t seq) { return PD_WAIT | (uintptr_t)seq << 2; }
static inline bool is_wait(uintptr_t v) { return (v & 3) == PD_WAIT; }
static inline bool is_g(uintptr_t v) { return v > PD_WAIT && !is_wait(v); } /* Gs are 64-byte aligned */

#define PD_CHUNK_BITS 12
#define PD_CHUNK      (1 << PD_CHUNK_BITS)
#define PD_CHUNKS     1024 /* fds below 4M */

static loom__pd *pdtab[PD_CHUNKS]; /* chunks, installed with CAS, freed at term */
static uint32_t nwaiters;          /* goroutines parked on fds; atomic */
static int maxfd = -1;             /* highest fd registered; atomic */

int loom__netpoll_init(void) {
    STORE(&nwaiters, 0);
    return loom__pollb_init();
}

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
        else {
            free(fresh);
            chunk = LOAD_ACQ(slot);
        }
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
    if (fl & O_NONBLOCK) return 0;
    return fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 1;
}

void loom__pd_forget(loom__pd *pd) {
    STORE_RLX(&pd->flags, 0);
    STORE_RLX(&pd->rdrained, 0);
}

/* Takes the read edge that arrived while nobody waited, if any: the read about to be made
 * sees whatever it announced.  true if there was one. */
bool loom__pd_take_read_edge(loom__pd *pd) { return LOAD(&pd->rg) == PD_READY && CAS(&pd->rg, PD_READY, 0); }

/* Takes whatever waits on *gpp out and returns the G to ready, if any (runtime.netpollunblock).
 * ioready: an edge arrived (leave PD_READY); else (close) just empty the word. */
static G *netpollunblock(uintptr_t *gpp, bool ioready) {
    for (;;) {
        uintptr_t old = LOAD(gpp);
        if (old == PD_READY) return NULL;
        if (old == 0 && !ioready) return NULL;
        uintptr_t nw = ioready ? PD_READY : 0;
        if (is_wait(old)) nw = ioready ? PD_READY : old; /* the waiter sees READY before parking */
        if (!CAS(gpp, old, nw)) continue;
        if (!is_g(old)) return NULL;
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
        /* (before the wakeup: the woken reader must see it) */
        if (ev[i].events & LOOM__POLL_ERR) __atomic_or_fetch(&pd->flags, PD_ERR, __ATOMIC_RELEASE);
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

static void pd_registered(loom__pd *pd) {
    __atomic_fetch_or(&pd->flags, PD_REG, __ATOMIC_RELAXED);
    int m = LOAD_RLX(&maxfd);
    while (pd->fd > m &&
           !__atomic_compare_exchange_n(&maxfd, &m, pd->fd, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}

struct pdwait {
    loom__pd *pd;
    uintptr_t *gpp[2];
    int n;
    uint32_t seq;
};

/* The "after switch" hook of a parking fd waiter (runtime.netpollblockcommit): publish the
 * G in its words; if an edge or a close came first, wake it at once. */
static void pd_commit(G *g, void *arg) {
    struct pdwait *w = arg; /* on g's stack: g waits in loom__park_timeout until this hook ends */
    loom__pd *pd = w->pd;
    uint32_t seq = w->seq;
    uintptr_t *gpp[2] = { w->gpp[0], w->gpp[1] };
    int n = w->n;
    bool wake = false;
    LOOM__CHAOS(CH_NETPOLL);
    for (int i = 0; i < n; i++)
        if (!CAS(gpp[i], pd_wait(seq), (uintptr_t)g)) wake = true; /* an edge, or a close's new waiter */
    if (LOAD(&pd->seq) != seq) wake = true;                        /* closed while we parked */
    if (wake && CAS(&g->selectdone, 0, 1)) {
        /* claimed first, then out of the words: a new file's waiter that finds us there
         * before we are out sees us claimed and on our way (unstale) */
        for (int i = 0; i < n; i++) CAS(gpp[i], (uintptr_t)g, 0);
        g->param = pd;
        loom__ready(g);
    }
}

/* A wait that consumed a read edge: the socket may have data again (io.c's rdrained). */
static int pd_ready(loom__pd *pd, int ready) {
    if ((ready & LOOM_READABLE) && LOAD_RLX(&pd->rdrained)) STORE_RLX(&pd->rdrained, 0);
    return ready;
}

/* A wait word of pd, read as v, that a waiter of seq `seq` could not claim: if v is what a
 * wait begun before the fd was last closed left there, take it out and return true (the
 * caller claims again); false if v is a live waiter of this file (the fd is busy).
 *  - PD_WAIT of an older seq: its owner has not published yet; emptying the word makes its
 *    publish fail, so it wakes at once and sees the close (pd_commit).
 *  - a G whose wait began with an older seq: claim it and ready it, as the closer would
 *    have had it been there in time, or, if someone already claimed it, just take it out:
 *    its own clean-up finds the word changed and leaves it. */
static bool clear_stale(loom__pd *pd, uintptr_t *gpp, uintptr_t v, uint32_t seq) {
    if (is_wait(v)) {
        if ((uint32_t)(v >> 2) == seq) return false; /* this file's: busy */
        CAS(gpp, v, 0);
        return true;
    }
    G *g = (G *)v;
    if (LOAD_RLX(&g->waitseq) == seq) return false;
    if (CAS(gpp, v, 0) && CAS(&g->selectdone, 0, 1)) {
        g->param = pd;
        loom__ready(g);
    }
    return true;
}

/* Parks the calling goroutine until fd is ready in any of `modes` (LOOM_READABLE/WRITABLE),
 * the deadline passes (ns < 0: none) or the fd is closed with loom_fd_close.
 * Returns the modes seen ready (> 0; may be spurious, the caller retries its I/O),
 * -ETIMEDOUT, -ECANCELED, -EBUSY (another goroutine already waits on the same fd and
 * direction) or a registration error (-EBADF, -EPERM for fds epoll cannot watch). */
int loom__netpoll_wait(loom__pd *pd, int modes, int64_t ns) {
    struct pdwait w = { .pd = pd, .n = 0, .seq = LOAD(&pd->seq) };
    bool counted = false; /* parkseq bumped for this wait */
    uintptr_t mine = pd_wait(w.seq);
    if (modes & LOOM_READABLE) w.gpp[w.n++] = &pd->rg;
    if (modes & LOOM_WRITABLE) w.gpp[w.n++] = &pd->wg;
    int64_t deadline = ns > 0 ? loom__now() + ns : ns;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < w.n; i++)
            if (CAS(w.gpp[i], PD_READY, 0)) ready |= w.gpp[i] == &pd->rg ? LOOM_READABLE : LOOM_WRITABLE;
        if (ready) return pd_ready(pd, ready);
        if (LOAD(&pd->seq) != w.seq) return -ECANCELED;
        if (deadline == 0) return -ETIMEDOUT;
        int64_t left = -1;
        if (deadline > 0) {
            left = deadline - loom__now();
            if (left <= 0) return -ETIMEDOUT;
        }
        if (!(LOAD_RLX(&pd->flags) & PD_REG)) {
            /* (again after netpoll_verify woke us: EEXIST, or 0 if it was stale, and then
             * the edge-triggered add reports the fd's state) */
            int r = loom__pollb_add(pd->fd, pd);
            if (r < 0 && r != -EEXIST) return r;
            pd_registered(pd);
        }
        G *g = loom__getm()->curg; /* a goroutine: poller_pd checked */
        STORE_RLX(&g->waitseq, w.seq);
        int claimed = 0;
        for (; claimed < w.n; claimed++)
            if (!CAS(w.gpp[claimed], 0, mine)) break;
        if (claimed < w.n) {
            uintptr_t v = LOAD(w.gpp[claimed]);
            for (int i = 0; i < claimed; i++) CAS(w.gpp[i], mine, 0);
            if (v == PD_READY || v == 0) continue; /* an edge arrived, or the holder left */
            if (!clear_stale(pd, w.gpp[claimed], v, w.seq)) return -EBUSY; /* a live waiter */
            continue; /* an old wait's leftover, taken out */
        }
        if (LOAD(&pd->seq) != w.seq) { /* closed as we claimed: let go */
            for (int i = 0; i < w.n; i++) CAS(w.gpp[i], mine, 0);
            return -ECANCELED;
        }
        STORE(&g->selectdone, 0);
        g->param = NULL;
        XADD(&nwaiters, 1);
        if (!counted) XADD(&pd->parkseq, 1); /* a new wait for netpoll_verify (before we publish) */
        counted = true;
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
        if (ready) return pd_ready(pd, ready);
        if (g->ctxerr) return g->ctxerr; /* its context ended (context.c) */
        /* woken by the deadline or a close (checked at the top), or spuriously: go round */
    }
}

/* How often to run loom__netpoll_verify: min_ns, or 500 ns per fd number it reads if that
 * is longer (a scan reads ~50 bytes per number: 10,000 connections cost ~1 % of a CPU at
 * 5 ms; 100,000 are looked at every 50 ms). */
int64_t loom__netpoll_verify_every(int64_t min_ns) {
    int64_t n = (int64_t)LOAD_RLX(&maxfd) * 500;
    return n > min_ns ? n : min_ns;
}

/* sysmon's check of registrations that a close() behind loom's back made stale (see the
 * top).  A waiter found parked at two looks in a row, in the same wait (parkseq), is woken
 * once with PD_REG cleared: it re-adds its fd itself and parks again.  sysmon never
 * touches the fd: the goroutine that waits on it is the only one that registers it, so a
 * concurrent close() can only race with the file's own user.  The goroutines to wake are
 * put on *list.  Returns how many parked waiters are still to be verified (sysmon sleeps
 * for good only when none are). */
int loom__netpoll_verify(G **list) {
    if (!loom__netpoll_has_waiters()) return 0;
    int pending = 0, top = LOAD_RLX(&maxfd);
    for (int fd = 0; fd <= top; fd++) {
        loom__pd *chunk = LOAD_ACQ(&pdtab[fd >> PD_CHUNK_BITS]);
        if (!chunk) {
            fd |= PD_CHUNK - 1;
            continue;
        }
        loom__pd *pd = &chunk[fd & (PD_CHUNK - 1)];
        if (!is_g(LOAD(&pd->rg)) && !is_g(LOAD(&pd->wg))) continue; /* no G parked */
        uint32_t s = LOAD(&pd->parkseq);
        if (s == pd->sm_verified) continue;
        if (s != pd->sm_seen) {
            pd->sm_seen = s;
            pending++;
            continue;
        }
        pd->sm_verified = s;
        __atomic_fetch_and(&pd->flags, ~(uint32_t)PD_REG, __ATOMIC_SEQ_CST);
        for (int d = 0; d < 2; d++) {
            G *g = netpollunblock(d ? &pd->wg : &pd->rg, false);
            if (!g) continue;
            g->param = pd;
            g->schedlink = *list;
            *list = g;
        }
    }
    return pending;
}

/* Wakes every goroutine parked on pd with -ECANCELED (the close half of runtime.netpollclose
 * plus poll_runtime_pollUnblock). */
void loom__netpoll_close(loom__pd *pd) {
    XADD(&pd->seq, 1);
    G *g;
    if ((g = netpollunblock(&pd->rg, false))) {
        g->param = pd;
        loom__ready(g);
    }
    if ((g = netpollunblock(&pd->wg, false))) {
        g->param = pd;
        loom__ready(g);
    }
    loom__pollb_del(pd->fd);
    loom__pd_forget(pd);
}
