// Command bulwarkbench measures Bulwark against nginx, HAProxy, Caddy and
// uvicorn on this machine (bench/README.md). `suite` runs everything and
// prints one markdown table; `backend` is the 1 KiB Go backend it starts.
// Everything stays on loopback, every loop is bounded in count and time, and
// every process it starts is stopped by PID.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  bulwarkbench suite [flags]      run the benchmark, print the table (see -h)
  bulwarkbench backend [-addr A]  serve the 1 KiB Go backend
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "suite":
		err = runSuite(ctx, args[1:], stdout, stderr)
	case "backend":
		err = runBackend(ctx, args[1:], stderr)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintf(stderr, "bulwarkbench %s: %v\n", args[0], err)
		return 1
	}
}
