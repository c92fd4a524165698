// Command bulwark is a TLS front door and reverse proxy that keeps a small
// server's Python web application inside its memory. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"bulwark/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
