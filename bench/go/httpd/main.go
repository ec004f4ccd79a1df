// httpd: the Go twin of examples/httpd.c, a net/http "hello" server: GET / (and HEAD /)
// answers "Hello, World!\n", other paths 404, other methods 405.
// Usage: httpd [PORT] (else env PORT, else 8080).  Driven by wrk from run.py.
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	port := "8080"
	if p := os.Getenv("PORT"); p != "" {
		port = p
	}
	if len(os.Args) > 1 && os.Args[1] != "" && os.Args[1][0] != '-' {
		port = os.Args[1]
	}
	body := []byte("Hello, World!\n")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/" {
			http.Error(w, "Not Found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, "httpd:", err)
		os.Exit(1)
	}
}
