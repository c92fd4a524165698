package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// IsolationResult is one slow-client isolation probe.
type IsolationResult struct {
	// Probes are the latencies, in milliseconds, of the quick requests sent
	// while the slow client was still transferring; a failed one counts
	// with the time it took to fail.
	Probes      []float64
	ProbeFailed int
	// SlowActive is true when at least one probe was sent while the slow
	// client was still transferring.
	SlowActive    bool
	SlowErr       string
	FirstProbeErr string
}

// IsolationOptions configures MeasureIsolation.
type IsolationOptions struct {
	BaseURL string
	// Upload selects a slow upload of Size bytes at Rate; otherwise a slow
	// download of Size bytes read at Rate, abandoned after the probes.
	Upload bool
	Size   int64
	Rate   int64
	// Probes quick GET / requests, one every Every, starting after Delay.
	Probes int
	Delay  time.Duration
	Every  time.Duration
	// ProbeTimeout bounds one quick request; a probe that fails counts
	// with the time it took.
	ProbeTimeout time.Duration
}

// MeasureIsolation starts one slow client and, while it is transferring,
// times quick requests on a separate kept-alive connection. With a
// concurrency limit of one at the proxy, the quick requests are answered at
// once only if the proxy shields the app from the slow client.
func MeasureIsolation(ctx context.Context, o IsolationOptions) (IsolationResult, error) {
	var res IsolationResult
	quick := newClient(o.ProbeTimeout)
	defer quick.CloseIdleConnections()
	if _, err := quickGet(ctx, quick, o.BaseURL); err != nil {
		return res, fmt.Errorf("warming the probe connection: %w", err)
	}
	limit := time.Duration(float64(o.Size)/float64(o.Rate)*float64(time.Second)) + 30*time.Second
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var progress atomic.Int64
	slowDone := make(chan error, 1)
	go func() { slowDone <- slowClient(sctx, o, &progress) }()

	sleepCtx(ctx, o.Delay)
	var slowErr error
	finished := false
	for i := range o.Probes {
		if i > 0 {
			sleepCtx(ctx, o.Every)
		}
		// Only a probe sent while the slow client is still transferring
		// tells anything; one that waited for it to finish counts in full.
		select {
		case slowErr = <-slowDone:
			finished = true
		default:
		}
		if finished {
			break
		}
		d, err := quickGet(ctx, quick, o.BaseURL)
		if err != nil {
			res.ProbeFailed++
			if res.FirstProbeErr == "" {
				res.FirstProbeErr = err.Error()
			}
		}
		res.Probes = append(res.Probes, float64(d.Microseconds())/1000)
	}
	res.SlowActive = len(res.Probes) > 0
	if !finished {
		if !o.Upload {
			cancel() // the slow download has served its purpose
		}
		slowErr = <-slowDone
		if !o.Upload {
			slowErr = nil // cancelled on purpose
		}
	}
	if slowErr != nil {
		res.SlowErr = slowErr.Error()
	}
	return res, nil
}

// quickGet times one GET / on c.
func quickGet(ctx context.Context, c *http.Client, base string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(start), err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("quick request: status %d", resp.StatusCode)
	}
	return d, nil
}

// slowClient uploads or downloads at o.Rate on its own connection.
func slowClient(ctx context.Context, o IsolationOptions, progress *atomic.Int64) error {
	c := newClient(0)
	defer c.CloseIdleConnections()
	if o.Upload {
		body := &pacedReader{ctx: ctx, r: &randomReader{state: 42}, left: o.Size, rate: o.Rate}
		h := sha256.New()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.BaseURL+"/upload", io.TeeReader(body, h))
		if err != nil {
			return err
		}
		req.ContentLength = o.Size
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("slow upload: %w", err)
		}
		defer resp.Body.Close()
		var a uploadAnswer
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&a); err != nil {
			return fmt.Errorf("slow upload: status %d: %w", resp.StatusCode, err)
		}
		if want := fmt.Sprintf("%x", h.Sum(nil)); a.Received != o.Size || a.SHA256 != want {
			return fmt.Errorf("slow upload: app received %d bytes sha256 %.12s, sent %d sha256 %.12s", a.Received, a.SHA256, o.Size, want)
		}
		return nil
	}
	url := fmt.Sprintf("%s/download?size=%d&seed=slow", o.BaseURL, o.Size)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("slow download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("slow download: status %d", resp.StatusCode)
	}
	_, err = pacedCopy(ctx, io.Discard, resp.Body, o.Rate, progress)
	return err
}
