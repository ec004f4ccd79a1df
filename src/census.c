/*
 * census.c — which threads of the process are not loom's (for the deadlock check).
 *
 * "All goroutines are asleep" is a deadlock only if nothing can wake one.  A thread that
 * loom did not create may call loom_try_send or loom_close at any time (a callback
 * thread, a thread the program started just before blocking, a library's worker), so
 * while one exists loom does not abort (API.md, "Never a false fatal").  loom's own
 * threads are loom_run's caller, sysmon and the Ms; every other entry of /proc/self/task
 * is someone else's.  The check runs only at the end of loom__checkdead, when nothing else
 * could run, and sysmon repeats it while it is the only thing that stopped the report
 * (a program's thread may exit without waking anyone: then the report follows).
 *
 * ThreadSanitizer starts a background thread of its own at the first pthread_create; a
 * TSan build of loom finds it once per process (the threads that appear while loom creates
 * and joins a thread that does nothing) and does not count it.  If it already existed
 * before the first loom_run, it counts as the program's: no false abort, only a deadlock
 * that is not reported.
 */
#include "internal.h"
#include <dirent.h>
#include <sys/syscall.h>
#include <unistd.h>

static int run_tid; /* loom_run's caller */

#if defined(LOOM_TSAN)
static int tsan_tids[4];
static int ntsan = -1; /* -1: not looked for yet in this process */

static int list_tids(int *out, int max) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max)
        if (e->d_name[0] != '.') out[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

static void *nothing(void *arg) { return arg; }

static void find_tsan_threads(void) {
    int before[256], after[256];
    int nb = list_tids(before, 256);
    pthread_t t;
    ntsan = 0;
    if (pthread_create(&t, NULL, nothing, NULL) != 0) return;
    pthread_join(t, NULL);
    int na = list_tids(after, 256);
    for (int i = 0; i < na && ntsan < 4; i++) {
        bool old = false;
        for (int j = 0; j < nb && !old; j++) old = before[j] == after[i];
        if (!old) tsan_tids[ntsan++] = after[i];
    }
}
#endif

void loom__census_init(void) {
    run_tid = (int)syscall(SYS_gettid);
#if defined(LOOM_TSAN)
    if (ntsan < 0) find_tsan_threads();
#endif
}

static bool is_loom_thread(int tid) {
    if (tid == run_tid || tid == LOAD(&loom__sched.sysmon_tid)) return true;
    for (M *m = LOAD_ACQ(&loom__sched.allm); m; m = m->alllink)
        if (LOAD_RLX(&m->tid) == tid) return true;
#if defined(LOOM_TSAN)
    for (int i = 0; i < ntsan; i++)
        if (tsan_tids[i] == tid) return true;
#endif
    return false;
}

bool loom__census_foreign(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return true; /* cannot tell: never a false abort */
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)))
        if (e->d_name[0] != '.' && !is_loom_thread((int)strtol(e->d_name, NULL, 10))) found = true;
    closedir(d);
    return found;
}
