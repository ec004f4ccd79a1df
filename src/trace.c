/*
 * trace.c — LOOM_TRACE=FILE: scheduler events as Chrome trace-event JSON (Perfetto and
 * chrome://tracing open it; tools/loom-trace-png.py draws it; tools/loom-trace-check.py
 * checks it).
 *
 * Tracks.  Process 1 ("loom Ps") has one track per P: the run slices of the goroutines it
 * ran ("X" events named "G<id> <name>", args.end says why the slice ended: block, yield,
 * preempt, exit, syscall) and instants for what happened there (spawn, block with its
 * reason, unblock, steal, preempt).  Process 2 ("loom threads (Ms)") has one track per
 * thread: "idle" slices while it sleeps for lack of work, "blocking call" slices for
 * loom_block_begin..end, and instants emitted by a thread holding no P (the poller, sysmon,
 * a timer run without a P).  Times are µs since loom_run started.
 *
 * Cost.  Off: one predictable branch on loom__trace_on at each hook.  On: each M appends
 * fixed-size records to its own buffer (no lock, no formatting); a full buffer is
 * formatted and written under trace_lock in one go, so one thread's events are contiguous
 * and in time order in the file ("stamp" = ts for instants, ts + dur for slices, which are
 * recorded when they end), while events of different threads interleave by buffer.
 * Threads without an M (loom_run's own thread, foreign threads) record nothing.
 * The file is complete (closed with "]}") when loom_run returns; a thread that never
 * stopped at exit keeps its last unflushed events.
 *
 * Who touches what: m->tbuf and m->tr_* belong to the M (only its thread writes them,
 * until mexit flushes); trace_fd, trace_lock and the writer state are under trace_lock.
 */
#include "internal.h"
#include <fcntl.h>
#include <unistd.h>

bool loom__trace_on; /* set by loom__trace_init before any M starts */

enum { TR_RUN, TR_IDLE, TR_SYSCALL, TR_SPAWN, TR_BLOCK, TR_UNBLOCK, TR_STEAL, TR_PREEMPT, TR_MSTART };

typedef struct {
    int64_t ts, dur; /* ns since start; dur for slices */
    uint64_t a, b;   /* goroutine ids / counts, by kind */
    int32_t p;       /* P track, or -1: the M's own track */
    uint8_t kind, why;
    char name[22]; /* a run slice's goroutine name */
} trec;

#define TBUF_RECS 2048
struct loom__tbuf {
    int n;
    trec rec[TBUF_RECS];
};

static int trace_fd = -1;
static loom__lock trace_lock = LOOM__LOCK_INIT;

static const char *const end_names[] = {
    [LOOM__TR_BLOCK] = "block", [LOOM__TR_YIELD] = "yield",     [LOOM__TR_PREEMPT] = "preempt",
    [LOOM__TR_EXIT] = "exit",   [LOOM__TR_SYSCALL] = "syscall",
};

/* the block reasons of the trace contract (tools/loom-trace-check.py), by WAIT_* */
static const char *const reason_names[WAIT_COUNT] = {
    [WAIT_NONE] = "none",
    [WAIT_CHAN_SEND] = "chan send",
    [WAIT_CHAN_RECV] = "chan recv",
    [WAIT_SELECT] = "select",
    [WAIT_SELECT_NOCASES] = "select (no cases)",
    [WAIT_SLEEP] = "sleep",
    [WAIT_MUTEX] = "mutex",
    [WAIT_RWMUTEX_R] = "rwmutex read",
    [WAIT_RWMUTEX_W] = "rwmutex write",
    [WAIT_COND] = "cond",
    [WAIT_WAITGROUP] = "waitgroup",
    [WAIT_SEMA] = "sema",
    [WAIT_IO] = "io",
    [WAIT_LOCKED_THREAD] = "locked thread",
};

/* ---------------------------------------------------------------- text output */

/* a JSON string body: names come from users */
static void w_json(loom__wbuf *w, const char *s, size_t max) {
    for (size_t i = 0; i < max && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8] = { 0 };
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
        } else if (c < 0x20) {
            esc[0] = '?';
        } else esc[0] = (char)c;
        loom__wb_str(w, esc);
    }
}

/* ns as µs with three decimals */
static void w_us(loom__wbuf *w, int64_t ns) {
    if (ns < 0) {
        loom__wb_str(w, "-");
        ns = -ns;
    }
    loom__wb_u64(w, (uint64_t)(ns / 1000));
    char f[5] = { '.', (char)('0' + ns / 100 % 10), (char)('0' + ns / 10 % 10), (char)('0' + ns % 10), 0 };
    loom__wb_str(w, f);
}

static void w_head(loom__wbuf *w, const char *ph, int pid, int64_t tid, const char *name) {
    loom__wb_str(w, ",\n{\"ph\":\"");
    loom__wb_str(w, ph);
    loom__wb_str(w, "\",\"pid\":");
    loom__wb_i64(w, pid);
    loom__wb_str(w, ",\"tid\":");
    loom__wb_i64(w, tid);
    loom__wb_str(w, ",\"name\":\"");
    loom__wb_str(w, name); /* left open */
}

static void w_thread_name(loom__wbuf *w, int pid, int64_t tid, const char *prefix) {
    w_head(w, "M", pid, tid, "thread_name");
    loom__wb_str(w, "\",\"args\":{\"name\":\"");
    loom__wb_str(w, prefix);
    loom__wb_i64(w, tid);
    loom__wb_str(w, "\"}}");
}

/* ",key": and a number */
static void put_u64(loom__wbuf *w, const char *key, uint64_t v) {
    loom__wb_str(w, key);
    loom__wb_u64(w, v);
}

/* ",key":"value" (key ends with the opening quote) */
static void put_str(loom__wbuf *w, const char *key, const char *v) {
    loom__wb_str(w, key);
    loom__wb_str(w, v);
    loom__wb_str(w, "\"");
}

static void w_rec(loom__wbuf *w, M *m, const trec *r) {
    int pid = r->p >= 0 ? 1 : 2;
    int64_t tid = r->p >= 0 ? r->p : m->id;
    switch (r->kind) {
    case TR_MSTART: w_thread_name(w, 2, m->id, "M"); return;
    case TR_RUN:
        w_head(w, "X", 1, r->p, "G");
        loom__wb_u64(w, r->a);
        if (r->name[0]) {
            loom__wb_str(w, " ");
            w_json(w, r->name, sizeof r->name);
        }
        loom__wb_str(w, "\",\"cat\":\"run");
        break;
    case TR_IDLE:
        w_head(w, "X", 2, m->id, "idle");
        loom__wb_str(w, "\",\"cat\":\"park");
        break;
    case TR_SYSCALL:
        w_head(w, "X", 2, m->id, "blocking call");
        loom__wb_str(w, "\",\"cat\":\"syscall");
        break;
    default: {
        static const char *const inames[] = { [TR_SPAWN] = "spawn",
                                              [TR_BLOCK] = "block",
                                              [TR_UNBLOCK] = "unblock",
                                              [TR_STEAL] = "steal",
                                              [TR_PREEMPT] = "preempt" };
        w_head(w, "i", pid, tid, inames[r->kind]);
        loom__wb_str(w, "\",\"s\":\"t\",\"cat\":\"sched");
        break;
    }
    }
    loom__wb_str(w, "\",\"ts\":");
    w_us(w, r->ts);
    if (r->kind == TR_RUN || r->kind == TR_IDLE || r->kind == TR_SYSCALL) {
        loom__wb_str(w, ",\"dur\":");
        w_us(w, r->dur);
    }
    loom__wb_str(w, ",\"args\":{\"m\":");
    loom__wb_i64(w, m->id);
    switch (r->kind) {
    case TR_RUN:
        put_u64(w, ",\"g\":", r->a);
        put_str(w, ",\"end\":\"", end_names[r->why]);
        break;
    case TR_SYSCALL: put_u64(w, ",\"g\":", r->a); break;
    case TR_SPAWN:
        put_u64(w, ",\"g\":", r->a);
        put_u64(w, ",\"new\":", r->b);
        break;
    case TR_BLOCK:
        put_u64(w, ",\"g\":", r->a);
        put_str(w, ",\"reason\":\"", reason_names[r->why < WAIT_COUNT ? r->why : 0]);
        break;
    case TR_UNBLOCK:
        put_u64(w, ",\"g\":", r->a);
        put_u64(w, ",\"by\":", r->b);
        break;
    case TR_STEAL:
        put_u64(w, ",\"from\":", r->b);
        put_u64(w, ",\"n\":", r->why);
        put_u64(w, ",\"g\":", r->a);
        break;
    case TR_PREEMPT:
        put_u64(w, ",\"g\":", r->a);
        loom__wb_str(w, r->why ? ",\"kind\":\"async\"" : ",\"kind\":\"cooperative\"");
        break;
    }
    loom__wb_str(w, "}}");
}

/* Writes m's buffered events to the file (by m's own thread, or by anyone once m has
 * stopped). */
static void flush_m(M *m) {
    struct loom__tbuf *tb = m->tbuf;
    if (!tb || tb->n == 0) return;
    static char buf[16384]; /* under trace_lock */
    static loom__wbuf w = { .cap = sizeof buf, .buf = buf };
    loom__lock_acquire(&trace_lock);
    if (trace_fd >= 0) {
        w.n = 0;
        w.fd = trace_fd;
        for (int i = 0; i < tb->n; i++) w_rec(&w, m, &tb->rec[i]);
        loom__wb_flush(&w);
    }
    loom__lock_release(&trace_lock);
    tb->n = 0;
}

static trec *rec_new(M *m, int kind, int64_t now) {
    struct loom__tbuf *tb = m->tbuf;
    if (!tb) return NULL;
    if (tb->n == TBUF_RECS) flush_m(m);
    trec *r = &tb->rec[tb->n++];
    r->kind = (uint8_t)kind;
    r->ts = now;
    r->dur = 0;
    r->why = 0;
    r->a = r->b = 0;
    r->p = m->p ? m->p->id : -1;
    r->name[0] = 0;
    return r;
}

static int64_t tnow(void) { return loom__nanotime() - loom__sched.start_time; }

/* ---------------------------------------------------------------- hooks (internal.h) */

void loom__trace_mstart(M *m) {
    m->tbuf = calloc(1, sizeof *m->tbuf);
    if (!m->tbuf) return;
    rec_new(m, TR_MSTART, tnow());
}

void loom__trace_mexit(M *m) {
    flush_m(m);
    free(m->tbuf);
    m->tbuf = NULL;
}

static void run_end(M *m, G *g, int why, int64_t now) {
    if (m->tr_start < 0) return;
    trec *r = rec_new(m, TR_RUN, m->tr_start);
    if (r) {
        r->p = m->tr_p;
        r->dur = now - m->tr_start;
        r->a = g->id;
        r->why = (uint8_t)why;
        size_t n = strnlen(g->name, sizeof r->name - 1);
        if (n == sizeof r->name - 1) /* cut at a character boundary (UTF-8) */
            while (n > 0 && ((unsigned char)g->name[n] & 0xC0) == 0x80) n--;
        memcpy(r->name, g->name, n);
        r->name[n] = 0;
    }
    m->tr_start = -1;
}

static void run_begin(M *m, int64_t now) {
    m->tr_start = now;
    m->tr_p = m->p ? m->p->id : -1;
}

void loom__trace_switch(M *m, G *from, G *to, bool dying) {
    int64_t now = tnow();
    if (from != &m->g0) {
        int why = m->tr_why ? m->tr_why : LOOM__TR_YIELD;
        uint32_t st = LOAD_RLX(&from->status);
        if (dying) why = LOOM__TR_EXIT;
        else if (st == G_WAITING) {
            why = LOOM__TR_BLOCK;
            trec *r = rec_new(m, TR_BLOCK, now);
            if (r) {
                r->a = from->id;
                r->why = (uint8_t)from->waitreason;
            }
        }
        run_end(m, from, why, now);
        m->tr_why = 0;
    }
    if (to != &m->g0 && m->p) run_begin(m, now);
}

void loom__trace_spawn(M *m, uint64_t id) {
    trec *r = rec_new(m, TR_SPAWN, tnow());
    if (r) {
        r->a = m->curg != &m->g0 ? m->curg->id : 0;
        r->b = id;
    }
}

void loom__trace_unblock(M *m, G *g) {
    trec *r = rec_new(m, TR_UNBLOCK, tnow());
    if (r) {
        r->a = g->id;
        r->b = m->curg != &m->g0 ? m->curg->id : 0;
    }
}

void loom__trace_steal(M *m, P *victim, G *g, int n) {
    trec *r = rec_new(m, TR_STEAL, tnow());
    if (r) {
        r->a = g->id;
        r->b = (uint64_t)victim->id;
        r->why = (uint8_t)(n > 255 ? 255 : n);
    }
}

void loom__trace_preempt(M *m, G *g, bool async) {
    trec *r = rec_new(m, TR_PREEMPT, tnow());
    if (r) {
        r->a = g->id;
        r->why = async;
    }
    m->tr_why = LOOM__TR_PREEMPT;
}

/* The record of a thread slice (idle, or in a blocking call) that began at m->tr_idle. */
static trec *thread_slice(M *m, int kind, int64_t now) {
    trec *r = rec_new(m, kind, m->tr_idle);
    if (r) {
        r->p = -1;
        r->dur = now - m->tr_idle;
    }
    return r;
}

void loom__trace_idle(M *m, bool begin) {
    int64_t now = tnow();
    if (begin) {
        m->tr_idle = now;
        return;
    }
    thread_slice(m, TR_IDLE, now);
}

void loom__trace_syscall(M *m, G *g, bool begin) {
    int64_t now = tnow();
    if (begin) {
        run_end(m, g, LOOM__TR_SYSCALL, now);
        m->tr_idle = now;
        return;
    }
    trec *r = thread_slice(m, TR_SYSCALL, now);
    if (r) r->a = g->id;
    if (m->p) run_begin(m, now);
}

/* ---------------------------------------------------------------- file */

void loom__trace_init(void) {
    loom__trace_on = false;
    const char *path = getenv("LOOM_TRACE");
    if (!path || !*path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "loom: LOOM_TRACE=%s: %s; tracing is off\n", path, strerror(errno));
        return;
    }
    trace_fd = fd;
    char buf[4096];
    loom__wbuf w = { .fd = fd, .cap = sizeof buf, .buf = buf };
    loom__wb_str(
            &w,
            "{\"traceEvents\":[\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"loom Ps\"}}");
    loom__wb_str(
            &w,
            ",\n{\"ph\":\"M\",\"pid\":2,\"name\":\"process_name\",\"args\":{\"name\":\"loom threads (Ms)\"}}");
    for (int i = 0; i < loom__nallp(); i++) w_thread_name(&w, 1, i, "P");
    loom__wb_flush(&w);
    loom__trace_on = true;
}

/* After every M stopped (their buffers are flushed by mexit): close the document. */
void loom__trace_term(void) {
    if (trace_fd < 0) return;
    loom__lock_acquire(&trace_lock);
    static const char end[] = "\n]}\n";
    ssize_t r = write(trace_fd, end, sizeof end - 1);
    (void)r;
    close(trace_fd);
    trace_fd = -1;
    loom__trace_on = false;
    loom__lock_release(&trace_lock);
}
