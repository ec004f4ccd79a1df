// echo: the Go twin of examples/echo.c, a TCP echo server (a goroutine per
// connection).  Usage: echo [PORT] (else env PORT, else 7000).
// Driven by bench_netclient (a loom client) from run.py.
package main

import (
	"fmt"
	"net"
	"os"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384) // as examples/echo.c
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	port := "7000"
	if p := os.Getenv("PORT"); p != "" {
		port = p
	}
	if len(os.Args) > 1 && os.Args[1] != "" && os.Args[1][0] != '-' {
		port = os.Args[1]
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(c)
	}
}
