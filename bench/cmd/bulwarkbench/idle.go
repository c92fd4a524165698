package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// clientTLS is the TLS configuration of every benchmark client. It offers
// only the classic X25519 and P-256 groups, so Go servers do not pick the
// larger hybrid post-quantum exchange that OpenSSL 3.0 servers cannot do.
func clientTLS(alpn ...string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // the bench's own self-signed certificate
		ServerName:         "localhost",
		NextProtos:         alpn,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
	}
}

// idleConn is one held connection.
type idleConn struct {
	tc *tls.Conn
	cc *http2.ClientConn // nil for HTTP/1.1
}

// IdleResult is one idle-connection measurement.
type IdleResult struct {
	Opened, Alive int
	Before, After Usage
	ConnectTime   time.Duration
	FirstErr      string
}

// KBPerConn returns the RSS and PSS growth per open connection, in KB (1024 bytes).
func (r IdleResult) KBPerConn() (rss, pss float64) {
	if r.Opened == 0 {
		return 0, 0
	}
	n := float64(r.Opened) * 1024
	return float64(r.After.RSS-r.Before.RSS) / n, float64(r.After.PSS-r.Before.PSS) / n
}

// IdleOptions configures MeasureIdle.
type IdleOptions struct {
	Addr   string // target host:port
	Proto  string // "h1" or "h2"
	Path   string // the one GET each connection does
	N      int    // connections to hold
	Roots  []int  // process trees whose memory is measured
	Warmup int    // connections opened and closed before the baseline
	Settle time.Duration
	// Parallel dialers and the bound on the whole connect phase.
	Parallel int
	Timeout  time.Duration
}

// MeasureIdle takes a baseline after Warmup connections, opens N connections
// that each do one GET and then stay idle, waits Settle, samples the trees,
// checks that the connections are still open, and closes them.
func MeasureIdle(ctx context.Context, o IdleOptions) (IdleResult, error) {
	var res IdleResult
	warm := openIdle(ctx, o, o.Warmup, &res)
	closeIdle(warm)
	if len(warm) != o.Warmup {
		return res, fmt.Errorf("warm-up: %d of %d connections: %s", len(warm), o.Warmup, res.FirstErr)
	}
	sleepCtx(ctx, time.Second)
	var err error
	if res.Before, err = Sample(o.Roots...); err != nil {
		return res, err
	}
	start := time.Now()
	conns := openIdle(ctx, o, o.N, &res)
	defer closeIdle(conns)
	res.ConnectTime = time.Since(start)
	res.Opened = len(conns)
	sleepCtx(ctx, o.Settle)
	if res.After, err = Sample(o.Roots...); err != nil {
		return res, err
	}
	res.Alive = countAlive(conns)
	return res, nil
}

// openIdle opens n connections with o.Parallel dialers, bounded by o.Timeout.
func openIdle(ctx context.Context, o IdleOptions, n int, res *IdleResult) []*idleConn {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var (
		mu    sync.Mutex
		conns = make([]*idleConn, 0, n)
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
	)
	h2t := &http2.Transport{}
	for range max(1, o.Parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				c, err := dialIdle(ctx, o, h2t)
				if err != nil {
					once.Do(func() { res.FirstErr = err.Error() })
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns
}

// dialIdle opens one connection and does one GET on it.
func dialIdle(ctx context.Context, o IdleOptions, h2t *http2.Transport) (*idleConn, error) {
	alpn := "http/1.1"
	if o.Proto == "h2" {
		alpn = "h2"
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: clientTLS(alpn)}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("dialing: %w", err)
	}
	tc := nc.(*tls.Conn)
	deadline, _ := ctx.Deadline()
	_ = tc.SetDeadline(deadline)
	if o.Proto == "h2" {
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			tc.Close()
			return nil, fmt.Errorf("server negotiated %q, not h2", p)
		}
		cc, err := h2t.NewClientConn(tc)
		if err != nil {
			tc.Close()
			return nil, fmt.Errorf("h2 client: %w", err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost"+o.Path, nil)
		resp, err := cc.RoundTrip(req)
		if err != nil {
			cc.Close()
			return nil, fmt.Errorf("h2 GET: %w", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		_ = tc.SetDeadline(time.Time{})
		if resp.StatusCode != http.StatusOK {
			cc.Close()
			return nil, fmt.Errorf("h2 GET: status %d", resp.StatusCode)
		}
		return &idleConn{tc: tc, cc: cc}, nil
	}
	if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bulwarkbench\r\n\r\n", o.Path); err != nil {
		tc.Close()
		return nil, fmt.Errorf("h1 GET: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(tc, 4096), nil)
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("h1 GET: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = tc.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK || resp.Close || strings.EqualFold(resp.Header.Get("Connection"), "close") {
		tc.Close()
		return nil, fmt.Errorf("h1 GET: status %d, close %v", resp.StatusCode, resp.Close)
	}
	return &idleConn{tc: tc}, nil
}

// countAlive checks every connection without sending a request: an h1
// connection is alive when a short read times out (the server neither
// closed it nor sent anything), an h2 one when its client is not closed.
func countAlive(conns []*idleConn) int {
	var alive atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range conns {
		if c.cc != nil {
			if st := c.cc.State(); !st.Closed && !st.Closing {
				alive.Add(1)
			}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = c.tc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			var b [1]byte
			_, err := c.tc.Read(b[:])
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				alive.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(alive.Load())
}

func closeIdle(conns []*idleConn) {
	for _, c := range conns {
		if c.cc != nil {
			_ = c.cc.Close()
		}
		_ = c.tc.Close()
	}
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
