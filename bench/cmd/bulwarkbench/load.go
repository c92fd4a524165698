package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LoadResult is one h2load measurement.
type LoadResult struct {
	RPS                float64
	Succeeded, Failed  int64
	Non2xx             int64
	P50ms, P99ms       float64
	CPU                float64 // seconds of the measured trees
	PeakRSS, RSSBefore int64
}

// CPUPer10k is the measured trees' CPU seconds per 10 000 successful requests.
func (r LoadResult) CPUPer10k() float64 {
	if r.Succeeded == 0 {
		return 0
	}
	return r.CPU / float64(r.Succeeded) * 10000
}

// LoadOptions configures MeasureLoad.
type LoadOptions struct {
	URL      string
	Proto    string // "h1" or "h2"
	Conns    int
	Threads  int
	Duration time.Duration
	// RatePerConn, if positive, caps each client at this many requests a
	// second (h2load --rps): a fixed-rate load instead of as fast as it goes.
	RatePerConn int
	Warmup      int // requests before the measurement
	// Headers are added to every request (h2load -H "Name: value").
	Headers []string
	// Requests, if positive, sends this many requests in all (one per
	// connection when it equals Conns) instead of running for Duration.
	Requests int
	Roots    []int
	WorkDir  string // for h2load's per-request log
}

var (
	reFinished = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	reRequests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed`)
	reStatus   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// MeasureLoad warms the target up, then runs h2load with one stream per
// connection for Duration, measuring the trees' CPU and peak RSS.
func MeasureLoad(ctx context.Context, o LoadOptions) (LoadResult, error) {
	var res LoadResult
	proto := []string{}
	if o.Proto == "h1" {
		proto = []string{"--h1"}
	}
	for _, h := range o.Headers {
		proto = append(proto, "-H", h)
	}
	if o.Warmup > 0 {
		args := append(slices.Clone(proto), "-n", strconv.Itoa(o.Warmup), "-c", "10", o.URL)
		if _, err := runH2load(ctx, 60*time.Second, args); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	logFile := filepath.Join(o.WorkDir, "h2load-req.log")
	_ = os.Remove(logFile)
	before, err := Sample(o.Roots...)
	if err != nil {
		return res, err
	}
	peak := WatchPeak(o.Roots, 100*time.Millisecond, o.Duration+30*time.Second)
	args := append(slices.Clone(proto),
		"-c", strconv.Itoa(o.Conns), "-m", "1", "-t", strconv.Itoa(o.Threads), "--log-file", logFile)
	if o.Requests > 0 {
		args = append(args, "-n", strconv.Itoa(o.Requests))
	} else {
		args = append(args, "-D", strconv.Itoa(int(o.Duration.Seconds())))
	}
	if o.RatePerConn > 0 {
		args = append(args, "--rps", strconv.Itoa(o.RatePerConn))
	}
	args = append(args, o.URL)
	out, err := runH2load(ctx, o.Duration+40*time.Second, args)
	res.PeakRSS = peak.Stop()
	if err != nil {
		return res, err
	}
	after, err := Sample(o.Roots...)
	if err != nil {
		return res, err
	}
	res.RSSBefore = before.RSS
	res.CPU = after.CPU - before.CPU
	if m := reFinished.FindSubmatch(out); m != nil {
		res.RPS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	m := reRequests.FindSubmatch(out)
	if m == nil {
		return res, fmt.Errorf("h2load output has no request counts: %s", lastLines(out, 5))
	}
	res.Succeeded, _ = strconv.ParseInt(string(m[1]), 10, 64)
	res.Failed, _ = strconv.ParseInt(string(m[2]), 10, 64)
	if m := reStatus.FindSubmatch(out); m != nil {
		for _, g := range m[2:] {
			n, _ := strconv.ParseInt(string(g), 10, 64)
			res.Non2xx += n
		}
	}
	res.P50ms, res.P99ms, err = latencyPercentiles(logFile)
	return res, err
}

// runH2load runs h2load bounded by limit and returns its output.
func runH2load(ctx context.Context, limit time.Duration, args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "h2load", args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("h2load %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 5))
	}
	return out, nil
}

// latencyPercentiles reads h2load's per-request log (start µs, status,
// duration µs) and returns the 50th and 99th percentile in milliseconds.
func latencyPercentiles(path string) (p50, p99 float64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, fmt.Errorf("h2load log: %w", err)
	}
	defer f.Close()
	var d []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(fs[2]), 64); err == nil {
			d = append(d, v/1000)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("h2load log: %w", err)
	}
	return percentile(d, 0.50), percentile(d, 0.99), nil
}

func lastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}
