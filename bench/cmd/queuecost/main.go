// Command queuecost measures what a request waiting in Bulwark's admission
// queue costs in Bulwark's own memory, the figure upstream.queue's default
// is derived from (README "The admission queue"). It runs bulwarkprof (for
// its loopback pprof listener, whose heap profile with gc=1 forces a
// collection) in front of a backend of its own that holds every /slow
// request until the end, with max_concurrency = 1. For HTTP/1.1 it opens N
// connections, each doing one quick GET, and samples; then every
// connection sends one /slow request, which all but one wait in the queue,
// and it samples again. HTTP/2 does the same with N/10 connections of ten
// streams each. The cost is the growth of the Go heap in use plus goroutine
// stacks (what counts against memory.limit) per waiting request, over an
// idle connection; RSS growth is printed beside it.
//
// Usage: go build -o /tmp/bulwarkprof ./bench/cmd/bulwarkprof &&
// go run ./bench/cmd/queuecost -bin /tmp/bulwarkprof -n 2000
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

func main() {
	bin := flag.String("bin", "/tmp/bulwarkprof", "bulwarkprof binary")
	n := flag.Int("n", 2000, "waiting requests per protocol")
	flag.Parse()
	if err := run(*bin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "queuecost:", err)
		os.Exit(1)
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "queuecost: no free loopback port:", err)
		os.Exit(1)
	}
	defer l.Close()
	return l.Addr().String()
}

func run(bin string, n int) error {
	release := make(chan struct{})
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go backend.Serve(bl)
	defer backend.Close()

	for _, proto := range []string{"h1", "h2"} {
		if err := measure(bin, proto, n, bl.Addr().String(), release); err != nil {
			return fmt.Errorf("%s: %w", proto, err)
		}
	}
	close(release)
	return nil
}

func measure(bin, proto string, n int, upstream string, release chan struct{}) error {
	dir, err := os.MkdirTemp("", "queuecost-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	https, admin, pprofAddr := freeAddr(), freeAddr(), freeAddr()
	cfg := fmt.Sprintf(`profile = "low"
[listen]
https = %q
max_conns = -1
max_conns_per_ip = -1
keepalive_timeout = "300s"
[upstream]
address = %q
max_concurrency = 1
queue = 1000000
queue_timeout = "300s"
read_timeout = "300s"
[limits]
rate_per_ip = "off"
[memory]
limit = "2GiB"
release_interval = "0s"
[admin]
listen = %q
[log]
access = "off"
level = "warn"
[tls]
cert_dir = %q
`, https, upstream, admin, dir)
	cfgPath := filepath.Join(dir, "bulwark.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "BULWARKPROF_ADDR="+pprofAddr, "XDG_STATE_HOME="+dir)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", https); err == nil {
			c.Close()
			break
		}
		if i == 200 {
			return fmt.Errorf("bulwark not listening on %s", https)
		}
		time.Sleep(50 * time.Millisecond)
	}

	streams := 1
	if proto == "h2" {
		streams = 10
	}
	conns := n / streams
	alpn := "http/1.1"
	if proto == "h2" {
		alpn = "h2"
	}
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, ServerName: "localhost"}
	var h1 []*tls.Conn
	var h2 []*http2.ClientConn
	t2 := &http2.Transport{}
	for range conns {
		c, err := tls.Dial("tcp", https, tc)
		if err != nil {
			return err
		}
		if proto == "h2" {
			cc, err := t2.NewClientConn(c)
			if err != nil {
				return err
			}
			req, _ := http.NewRequest("GET", "https://localhost/fast", nil)
			res, err := cc.RoundTrip(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			h2 = append(h2, cc)
			continue
		}
		fmt.Fprint(c, "GET /fast HTTP/1.1\r\nHost: localhost\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		h1 = append(h1, c)
	}
	before, err := sample(admin, pprofAddr, cmd.Process.Pid)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range h1 {
		fmt.Fprint(c, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
	}
	for _, cc := range h2 {
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", "https://localhost/slow", nil)
				if res, err := cc.RoundTrip(req); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}()
		}
	}
	want := float64(conns*streams - 1)
	for i := 0; ; i++ {
		m, err := metricsOf(admin)
		if err != nil {
			return err
		}
		if m["bulwark_queue_length"] >= want {
			break
		}
		if i == 600 {
			return fmt.Errorf("queue at %v after 60 s, want %v", m["bulwark_queue_length"], want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after, err := sample(admin, pprofAddr, cmd.Process.Pid)
	if err != nil {
		return err
	}
	w := want
	fmt.Printf("%s: %d connections × %d, %v waiting: Go heap+stacks %.0f → %.0f KiB, %.2f KiB per waiting request (heap %.2f, stacks %.2f); RSS %.2f KiB per request; goroutines %.0f → %.0f\n",
		proto, conns, streams, w, (before.heap+before.stack)/1024, (after.heap+after.stack)/1024,
		(after.heap+after.stack-before.heap-before.stack)/w/1024, (after.heap-before.heap)/w/1024, (after.stack-before.stack)/w/1024,
		(after.rss-before.rss)/w/1024, before.goroutines, after.goroutines)
	cancel()
	for _, c := range h1 {
		c.Close()
	}
	for _, cc := range h2 {
		cc.Close()
	}
	return nil
}

type usage struct{ heap, stack, rss, goroutines float64 }

// sample forces a collection (the heap profile with gc=1) and reads the
// Go memory figures from /metrics and VmRSS.
func sample(admin, pprofAddr string, pid int) (usage, error) {
	res, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return usage{}, err
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	m, err := metricsOf(admin)
	if err != nil {
		return usage{}, err
	}
	u := usage{heap: m["go_memstats_heap_inuse_bytes"], stack: m["go_memstats_stack_inuse_bytes"], goroutines: m["go_goroutines"]}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			u.rss = kb * 1024
		}
	}
	return u, nil
}

func metricsOf(admin string) (map[string]float64, error) {
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}
