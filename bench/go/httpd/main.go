// httpd: the Go twin of examples/httpd.c, a net/http "hello" server.
// Usage: httpd [PORT] (else env PORT, else 8080).  Driven by wrk from run.sh.
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
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, "httpd:", err)
		os.Exit(1)
	}
}
