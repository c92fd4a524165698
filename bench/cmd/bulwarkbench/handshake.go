package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HandshakeResult is one handshake-rate measurement.
type HandshakeResult struct {
	Conns, Resumed, Failed int64
	Elapsed                time.Duration
	CPU                    float64 // seconds of the measured trees
	FirstErr               string
}

// PerSecond is completed connections per second.
func (r HandshakeResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Elapsed.Seconds()
}

// CPUms is the measured trees' CPU per connection, in milliseconds.
func (r HandshakeResult) CPUms() float64 {
	if r.Conns == 0 {
		return 0
	}
	return r.CPU / float64(r.Conns) * 1000
}

// HandshakeOptions configures MeasureHandshakes.
type HandshakeOptions struct {
	Addr     string
	Path     string
	Workers  int
	Duration time.Duration
	// Resume gives each worker a session cache, so every handshake after
	// its first resumes (TLS 1.3 PSK); otherwise every handshake is full.
	Resume bool
	Roots  []int
}

// MeasureHandshakes runs Workers loops for Duration; each connects, does one
// GET with "Connection: close", reads the answer and closes.
func MeasureHandshakes(ctx context.Context, o HandshakeOptions) (HandshakeResult, error) {
	var res HandshakeResult
	var conns, resumed, failed atomic.Int64
	var once sync.Once
	before, err := Sample(o.Roots...)
	if err != nil {
		return res, err
	}
	// Workers start no connection after end, and finish the one they are
	// on: a connection cut off by a deadline would count as a failure.
	start := time.Now()
	end := start.Add(o.Duration)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := clientTLS("http/1.1")
			if o.Resume {
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			}
			for ctx.Err() == nil && time.Now().Before(end) {
				did, err := oneHandshake(ctx, o, cfg)
				switch {
				case err != nil && ctx.Err() != nil:
					return // the suite is stopping
				case err != nil:
					failed.Add(1)
					once.Do(func() { res.FirstErr = err.Error() })
				default:
					conns.Add(1)
					if did {
						resumed.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	after, err := Sample(o.Roots...)
	if err != nil {
		return res, err
	}
	res.Conns, res.Resumed, res.Failed = conns.Load(), resumed.Load(), failed.Load()
	res.CPU = after.CPU - before.CPU
	return res, nil
}

// oneHandshake does one connection and reports whether it resumed.
func oneHandshake(ctx context.Context, o HandshakeOptions, cfg *tls.Config) (bool, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return false, fmt.Errorf("dialing: %w", err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", o.Path); err != nil {
		return false, fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return false, fmt.Errorf("reading answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	// Read to EOF so a TLS 1.3 session ticket sent after the answer is seen.
	_, _ = io.Copy(io.Discard, nc)
	return nc.(*tls.Conn).ConnectionState().DidResume, nil
}
