package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// newClient returns an HTTP/1.1 client for the proxy with its own pool.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:     clientTLS("http/1.1"),
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
}

// TransferResult is one upload or download measurement.
type TransferResult struct {
	OK, Failed int
	Elapsed    time.Duration
	Before     Usage
	PeakRSS    int64
	// Written is the growth of write_bytes of the measured trees: what they
	// wrote to disk (temp files) during the transfers.
	Written  int64
	FirstErr string
}

// TransferOptions configures MeasureUploads and MeasureDownloads.
type TransferOptions struct {
	BaseURL string // https://127.0.0.1:8443
	Clients int
	Size    int64
	// Rate paces each download (bytes per second); 0 reads as fast as possible.
	Rate    int64
	Roots   []int
	Timeout time.Duration
}

type uploadAnswer struct {
	Received int64  `json:"received"`
	SHA256   string `json:"sha256"`
}

// MeasureUploads posts Clients bodies of Size random bytes at once to
// /upload and checks the length and sha256 the app reports for each.
func MeasureUploads(ctx context.Context, o TransferOptions) (TransferResult, error) {
	bodies := make([][]byte, o.Clients)
	sums := make([]string, o.Clients)
	for i := range bodies {
		bodies[i] = make([]byte, o.Size)
		_, _ = io.ReadFull(&randomReader{state: uint64(i)*7919 + 1}, bodies[i])
		sums[i] = fmt.Sprintf("%x", sha256.Sum256(bodies[i]))
	}
	client := newClient(o.Timeout)
	defer client.CloseIdleConnections()
	return runTransfers(ctx, o, func(ctx context.Context, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.BaseURL+"/upload", bytes.NewReader(bodies[i]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("upload: %w", err)
		}
		defer resp.Body.Close()
		var a uploadAnswer
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&a); err != nil {
			return fmt.Errorf("upload: status %d: %w", resp.StatusCode, err)
		}
		if a.Received != o.Size || a.SHA256 != sums[i] {
			return fmt.Errorf("upload: app received %d bytes sha256 %.12s, sent %d sha256 %.12s", a.Received, a.SHA256, o.Size, sums[i])
		}
		return nil
	})
}

// MeasureDownloads reads Clients downloads of Size bytes at once from
// /download, each paced to Rate, and checks their sha256.
func MeasureDownloads(ctx context.Context, o TransferOptions) (TransferResult, error) {
	want := make([]string, o.Clients)
	for i := range want {
		want[i] = PatternSHA256(fmt.Sprint("c", i), o.Size)
	}
	client := newClient(o.Timeout)
	defer client.CloseIdleConnections()
	return runTransfers(ctx, o, func(ctx context.Context, i int) error {
		url := fmt.Sprintf("%s/download?size=%d&seed=c%d", o.BaseURL, o.Size, i)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("download: status %d", resp.StatusCode)
		}
		h := sha256.New()
		n, err := pacedCopy(ctx, h, resp.Body, o.Rate, nil)
		if err != nil {
			return fmt.Errorf("download after %d bytes: %w", n, err)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); n != o.Size || got != want[i] {
			return fmt.Errorf("download: got %d bytes sha256 %.12s, want %d sha256 %.12s", n, got, o.Size, want[i])
		}
		return nil
	})
}

// runTransfers runs one transfer per client at once, sampling the trees.
func runTransfers(ctx context.Context, o TransferOptions, one func(context.Context, int) error) (TransferResult, error) {
	var res TransferResult
	var err error
	if res.Before, err = Sample(o.Roots...); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	peak := WatchPeak(o.Roots, 50*time.Millisecond, o.Timeout+10*time.Second)
	var failed atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for i := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := one(ctx, i); err != nil {
				failed.Add(1)
				once.Do(func() { res.FirstErr = err.Error() })
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.PeakRSS = peak.Stop()
	after, err := Sample(o.Roots...)
	if err != nil {
		return res, err
	}
	res.Written = after.WriteBytes - res.Before.WriteBytes
	res.Failed = int(failed.Load())
	res.OK = o.Clients - res.Failed
	return res, nil
}

// pacedCopy copies src to dst at no more than rate bytes per second (0: no
// limit), reporting progress to got when non-nil.
func pacedCopy(ctx context.Context, dst io.Writer, src io.Reader, rate int64, got *atomic.Int64) (int64, error) {
	buf := make([]byte, 32<<10)
	if rate > 0 {
		buf = buf[:min(int64(len(buf)), max(rate/20, 1024))]
	}
	start := time.Now()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := src.Read(buf)
		if k > 0 {
			_, _ = dst.Write(buf[:k])
			n += int64(k)
			if got != nil {
				got.Store(n)
			}
			if rate > 0 {
				due := start.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
				sleepCtx(ctx, time.Until(due))
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// pacedReader yields size bytes of r at no more than rate bytes per second.
type pacedReader struct {
	ctx   context.Context
	r     io.Reader
	left  int64
	rate  int64
	start time.Time
	sent  int64
	done  atomic.Bool
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		p.done.Store(true)
		return 0, io.EOF
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
	sleepCtx(p.ctx, time.Until(due))
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	chunk := min(int64(len(b)), p.left, max(p.rate/20, 512))
	n, err := p.r.Read(b[:chunk])
	p.left -= int64(n)
	p.sent += int64(n)
	return n, err
}
