/*
 * test_sleep_alone.c — the only goroutine sleeps, again and again, with priority levels in
 * use (so sysmon fires due timers itself, from a thread without a P): never a deadlock
 * report.  While sysmon holds a goroutine it took off a timer heap and has not queued yet,
 * every M may be idle with no timer and no queued goroutine left to see; the deadlock check
 * waits for sysmon there.  Runs under chaos seeds (LOOM_CHAOS) to stretch that window.
 */
#include "t.h"
#include <unistd.h>

static int main_sleep(void *arg)
{
    (void)arg;
    CHECK(loom_set_priority(LOOM_PRIO_HIGH) == LOOM_PRIO_NORMAL); /* levels in use */
    int n = (int)t_scale(300);
    for (int i = 0; i < n; i++)
        loom_sleep(100000 + (i % 7) * 30000);
    return 5;
}

int main(void)
{
    alarm(250);
    T_RUN_CHAOS(40, 100, main_sleep, NULL, 5);
    printf("test_sleep_alone: ok\n");
    return 0;
}
