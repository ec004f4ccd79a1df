/*
 * hook_block.c — calls that block inside libc with no fd the hook could wait on: name
 * resolution (getaddrinfo, getnameinfo, gethostbyname*, gethostbyaddr*).  From a
 * goroutine they run between loom_block_begin and loom_block_end: if one lasts, loom hands
 * the goroutine's P to another thread (Go's syscall handoff), so the other goroutines go
 * on; the thread itself waits in libc.  Anywhere else they are the plain calls, and so
 * are lookups that need no lookup (a numeric address and port, as libraries pass for
 * "127.0.0.1"): a handoff there would cost a thread for a few microseconds' work.
 */
#include "hook.h"
#include <arpa/inet.h>
#include <errno.h>

/* Runs `call` as the blocking path from a goroutine, else plainly. */
#define BLOCKING(type, call) \
    do { \
        if (loom__hook_mode(HOOK_CALLER()) != H_PARK) return call; \
        return HOOK_BLOCKING(type, call); \
    } while (0)

/* A host that is an address already (or none), and a port number (or none). */
static bool numeric(const char *node, const char *service) {
    unsigned char a[16];
    if (node && inet_pton(AF_INET, node, a) != 1 && inet_pton(AF_INET6, node, a) != 1) return false;
    for (const char *p = service; p && *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

HOOK_API int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                         struct addrinfo **res) {
    if (numeric(node, service)) return loom__real.getaddrinfo(node, service, hints, res);
    BLOCKING(int, loom__real.getaddrinfo(node, service, hints, res));
}

HOOK_API int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                         char *serv, socklen_t servlen, int flags) {
    if ((flags & NI_NUMERICHOST) && (flags & NI_NUMERICSERV))
        return loom__real.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    BLOCKING(int, loom__real.getnameinfo(sa, salen, host, hostlen, serv, servlen, flags));
}

HOOK_API struct hostent *gethostbyname(const char *name) {
    BLOCKING(struct hostent *, loom__real.gethostbyname(name));
}

HOOK_API struct hostent *gethostbyname2(const char *name, int af) {
    BLOCKING(struct hostent *, loom__real.gethostbyname2(name, af));
}

HOOK_API struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type) {
    BLOCKING(struct hostent *, loom__real.gethostbyaddr(addr, len, type));
}

HOOK_API int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                             struct hostent **result, int *h_errnop) {
    BLOCKING(int, loom__real.gethostbyname_r(name, ret, buf, buflen, result, h_errnop));
}

HOOK_API int gethostbyname2_r(const char *name, int af, struct hostent *ret, char *buf, size_t buflen,
                              struct hostent **result, int *h_errnop) {
    BLOCKING(int, loom__real.gethostbyname2_r(name, af, ret, buf, buflen, result, h_errnop));
}

HOOK_API int gethostbyaddr_r(const void *addr, socklen_t len, int type, struct hostent *ret, char *buf,
                             size_t buflen, struct hostent **result, int *h_errnop) {
    BLOCKING(int, loom__real.gethostbyaddr_r(addr, len, type, ret, buf, buflen, result, h_errnop));
}
