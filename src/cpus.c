/* cpus.c — placeholder: affinity only (the cgroup-aware version replaces this file). */
#include "internal.h"
#include <sched.h>
int loom__cpu_count_at(const char *cgroup_root, const char *proc_self_cgroup, int affinity_cpus) {
    (void)cgroup_root; (void)proc_self_cgroup;
    return affinity_cpus > 0 ? affinity_cpus : 1;
}
int loom__cpu_count(void) {
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) != 0) return 1;
    return loom__cpu_count_at("/sys/fs/cgroup", "/proc/self/cgroup", CPU_COUNT(&s));
}
