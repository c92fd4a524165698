// Command bulwarkprof is bulwark with a pprof listener, for profiling in the
// benchmark (bench/README.md) only: it serves net/http/pprof (profiles and
// /debug/pprof/trace, the execution tracer) on
// $BULWARKPROF_ADDR (default 127.0.0.1:6061, loopback only) and otherwise
// runs exactly as `bulwark`. Bulwark itself has no pprof endpoint.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"bulwark/internal/cli"
)

func main() {
	addr := os.Getenv("BULWARKPROF_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6061"
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		fmt.Fprintf(os.Stderr, "bulwarkprof: BULWARKPROF_ADDR %q must be a loopback host:port\n", addr)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
			fmt.Fprintf(os.Stderr, "bulwarkprof: pprof listener: %v\n", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	_ = srv.Close()
	os.Exit(code)
}
