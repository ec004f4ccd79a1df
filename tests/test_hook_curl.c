/*
 * test_hook_curl.c — libcurl's easy API on goroutines through libloom_hook, against
 * examples/httpd, which this test starts on a free loopback port and stops:
 *  - 200 goroutines at LOOM_PROCS=2, each with its own easy handle, 10 requests on a
 *    kept-alive connection (GET / answers "Hello, World!\n", GET /missing 404), every
 *    status and body checked; curl waits in poll() on its socket and its wake-up pair,
 *    which park the goroutine: the process stays within the thread bound and no spare
 *    P is lent.
 * Exits 77 (skipped) without libcurl at build time or without the example server.
 */
#include "t_hook.h"
#include "t_server.h"

#if !defined(LOOM_HAVE_CURL) || !defined(LOOM_EXAMPLE_BIN)
int main(void)
{
    printf("test_hook_curl: skipped: built without libcurl (libcurl4-openssl-dev; .ci/run installs it) "
           "or without the examples\n");
    return 77;
}
#else
#include <curl/curl.h>

static int port;
static loom_waitgroup wg = LOOM_WAITGROUP_INIT;
static int failures;

struct body {
    char buf[256];
    size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct body *b = arg;
    size_t k = size * n;
    if (b->len + k < sizeof b->buf) {
        memcpy(b->buf + b->len, p, k);
        b->len += k;
    }
    return k;
}

static void bad(const char *what, const char *detail)
{
    fprintf(stderr, "test_hook_curl: %s: %s\n", what, detail);
    __atomic_fetch_add(&failures, 1, __ATOMIC_SEQ_CST);
}

enum { ROUNDS = 10 };

static void client(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    char url[64], missing[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    snprintf(missing, sizeof missing, "http://127.0.0.1:%d/missing", port);
    struct body b;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    for (int r = 0; r < ROUNDS; r++) {
        bool miss = r % 5 == 4;
        b.len = 0;
        curl_easy_setopt(h, CURLOPT_URL, miss ? missing : url);
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK)
            bad("perform", curl_easy_strerror(rc));
        else if (status != (miss ? 404 : 200))
            bad("status", miss ? "not 404" : "not 200");
        else if (!miss && (b.len != 14 || memcmp(b.buf, "Hello, World!\n", 14) != 0))
            bad("body", "not hello");
    }
    long conns = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    if (conns > 1)
        bad("keep-alive", "a new connection");
    curl_easy_cleanup(h);
    loom_wg_done(&wg);
}

static int main_fn(void *arg)
{
    (void)arg;
    int n = (int)t_scale(200);
    struct t_watch w;
    int64_t took = t_hook_clients(n, client, &wg, &w, "curl clients");
    CHECK_EQ(t_get(&failures), 0);
    printf("test_hook_curl: %d clients x %d requests in %.0f ms, at most %d threads\n", n, ROUNDS, took / 1e6,
           w.max_threads);
    return 0;
}

int main(int argc, char **argv)
{
    t_hook_require("test_hook_curl");
    const char *path = t_server_path(argc, argv);
    if (!path || access(path, X_OK) != 0) {
        printf("test_hook_curl: skipped: no example httpd at %s\n", path ? path : "(none)");
        return 77;
    }
    CHECK_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    t_server s;
    t_server_start(&s, path, "httpd");
    port = s.port;
    t_prepare_fds(4096);
    t_hook_run(2, main_fn, NULL);
    t_server_stop(&s);
    curl_global_cleanup();
    printf("test_hook_curl: ok\n");
    return 0;
}
#endif
