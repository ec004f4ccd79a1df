/*
 * topo.h — the machine's CPU topology as the scheduler sees it: which CPU each P runs on,
 * which Ps share a cache or a NUMA node, in what order a P looks for work to steal, and
 * where its memory should come from.  topo.c's header comment explains the design and the
 * LOOM_TOPOLOGY format.
 *
 * Ps are numbered 0..nprocs-1; spare Ps nprocs..2*nprocs-1 stand for the P p - nprocs (they
 * run where it runs).  Every reader below is a pure lookup in tables filled by
 * loom__topo_init, so any thread may call them once init has returned (and until term).
 * Before init (or after term) they describe one CPU 0 in one cache and one node.
 */
#ifndef LOOM_TOPO_H
#define LOOM_TOPO_H
#include <stdbool.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Discovers the topology (or takes LOOM_TOPOLOGY) and reads LOOM_PIN.  0, -EINVAL for
 * nprocs < 1, -EBUSY when already initialised.  Never fails for missing sysfs files. */
int loom__topo_init(int nprocs);
void loom__topo_term(void);

int loom__topo_cpu(int p);         /* CPU number assigned to P p */
int loom__topo_cache(int p);       /* last-level cache group of p's CPU: 0..groups-1 */
int loom__topo_node(int p);        /* NUMA node of p's CPU: 0..loom__topo_nnodes()-1 */
int loom__topo_nnodes(void);       /* nodes holding at least one of our CPUs, >= 1 */
int loom__topo_tier(int p, int q); /* 0: share a cache, 1: same node, 2: another node */

/* Writes the Ps of 0..n-1 other than p to out (room for n), nearest first: all of tier 0,
 * then tier 1, then tier 2.  Within each tier the Ps are in increasing order rotated to
 * start at a place chosen by r (mixed radix: tier 0 by r % k0, tier 1 by (r / k0) % k1,
 * tier 2 by (r / k0 / k1) % k2, where kt is the tier's size), so a random r tries equal
 * victims in a random order.  Returns the count written (n - 1 when p < n). */
int loom__topo_steal_order(int p, int n, uint32_t r, int *out);

bool loom__topo_fake(void); /* a LOOM_TOPOLOGY description is in force */

/* LOOM_PIN=1 (read at init): pins the calling thread to p's CPU; 0 or -errno.  0 and no
 * effect without LOOM_PIN=1 or with a fake topology.  A thread created by a pinned thread
 * inherits its one-CPU mask: see loom__topo_unpin_self. */
int loom__topo_pin_self(int p);
/* Gives the calling thread back the affinity mask the process had at init; 0 or -errno.
 * A no-op (0) whenever loom__topo_pin_self is one. */
int loom__topo_unpin_self(void);

/* Places thread tid, about to be woken by the caller, on the caller's CPU (the caller is
 * about to sleep: the kernel would otherwise queue the woken thread behind a busy CPU's
 * running one), if its mask allows that CPU; the mask it had goes to *saved (allocated at
 * the first lend; the caller frees it).  0 or -errno.  The woken thread calls
 * loom__topo_lent_back(*saved). */
int loom__topo_lend_cpu(int tid, void **saved);
/* The same for a thread about to be created with attr: it starts on the caller's CPU, and
 * *saved gets the caller's mask, which it would have inherited.  The kernel would place it
 * on the CPU least busy at creation, which is the other one while the caller still runs,
 * and the caller's CPU then idles behind it: an idle CPU pulls running threads from a busy
 * one only at its balancing tick. */
int loom__topo_lend_cpu_attr(pthread_attr_t *attr, void **saved);
/* Undoes either on the calling thread: the mask saved (with LOOM_PIN=1 acquirep pins it
 * again). */
void loom__topo_lent_back(void *saved);

/* Prefers node's memory (node as loom__topo_node numbers it) for the whole pages inside
 * [addr, addr+len), via mbind(MPOL_PREFERRED); it affects pages touched after the call.
 * 0 or -errno (-EINVAL for a bad node; mbind's error, e.g. -EPERM or -ENOSYS under a
 * seccomp filter).  A no-op (0) with one node, a fake topology or an unknown node number. */
int loom__topo_bind(void *addr, size_t len, int node);

/* For tests: discovery only (LOOM_TOPOLOGY is not read; LOOM_PIN is), with sysdir in place
 * of /sys/devices/system and, when allowed is not NULL, the CPU list allowed (e.g. "0-7")
 * in place of the sched_getaffinity mask.  Same results as loom__topo_init. */
int loom__topo_init_at(int nprocs, const char *sysdir, const char *allowed);
#endif
