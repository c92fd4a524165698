package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// slowBackend answers every request after d, or when release is closed
// if d is 0.
func slowBackend(t *testing.T, d time.Duration, release <-chan struct{}) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wait <-chan time.Time
		if d > 0 {
			tm := time.NewTimer(d)
			defer tm.Stop()
			wait = tm.C
		}
		select {
		case <-wait:
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// burst sends clients × streams GETs at once, each client on an HTTP/2
// connection of its own, and returns the count of each status and of
// 503 reasons ("queue_full" and so on, from the body).
func burst(t *testing.T, in *instance, clients, streams int) (codes map[int]int, reasons map[string]int) {
	t.Helper()
	var mu sync.Mutex
	codes, reasons = map[int]int{}, map[string]int{}
	var wg sync.WaitGroup
	for range clients {
		// One connection a client, as a browser's: http.Transport would
		// dial several at once before it learns the server speaks h2.
		c := &http.Client{Timeout: 60 * time.Second, Transport: &http2.Transport{
			TLSClientConfig: &tls.Config{RootCAs: in.roots, ServerName: "localhost"}}}
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.Get(in.url("/"))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					codes[-1]++
					reasons[err.Error()]++
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				codes[res.StatusCode]++
				if res.StatusCode != http.StatusOK {
					reasons[strings.TrimSpace(string(body))]++
				}
			}()
		}
	}
	wg.Wait()
	return codes, reasons
}

// TestAdmissionQueueHoldsAPageLoad is issue 16 §9 "Admission": fifty
// clients with ten HTTP/2 streams each (500 requests at once) against a
// slow app with four slots, on the low profile (a 512 MB box) with the
// default queue: every request waits its turn and gets 200; none gets a
// queue_full 503.
func TestAdmissionQueueHoldsAPageLoad(t *testing.T) {
	app := slowBackend(t, 20*time.Millisecond, nil)
	cfg := "profile = \"low\"\n" + withUpstream(app, "max_concurrency = 4\n") + "[log]\naccess = \"off\"\n"
	cfg = strings.Replace(cfg, "[log]\naccess = \"stderr\"\n", "", 1)
	in := startBulwark(t, cfg, nil)
	codes, reasons := burst(t, in, 50, 10)
	t.Logf("50 clients × 10 h2 streams, max_concurrency 4, app 20 ms: %v %v", codes, reasons)
	if codes[http.StatusOK] != 500 {
		t.Errorf("statuses %v (%v), want 500 × 200: the queue turned a page load away", codes, reasons)
	}
	noRace(t, in)
}

// TestAdmissionQueueBoundRefuses: the bound still holds when set: with
// queue = 20 and one slot held, of 50 requests at once 1 is in flight, 20
// wait and 29 get a queue_full 503 at once; the 21 then get 200.
func TestAdmissionQueueBoundRefuses(t *testing.T) {
	release := make(chan struct{})
	app := slowBackend(t, 0, release)
	in := startBulwark(t, withUpstream(app, "max_concurrency = 1\nqueue = 20\n"), nil)
	type result struct {
		codes   map[int]int
		reasons map[string]int
	}
	done := make(chan result, 1)
	go func() {
		c, r := burst(t, in, 5, 10)
		done <- result{c, r}
	}()
	waitFor(t, 30*time.Second, "29 requests refused", func() bool {
		return rejected(t, in) >= 29
	})
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the burst did not finish within 60 s of the release")
	}
	t.Logf("50 at once, max_concurrency 1, queue 20: %v %v", r.codes, r.reasons)
	full := 0
	for reason, n := range r.reasons {
		if strings.Contains(reason, "queue is full") {
			full += n
		}
	}
	if r.codes[http.StatusOK] != 21 || r.codes[http.StatusServiceUnavailable] != 29 || full != 29 {
		t.Errorf("statuses %v, reasons %v; want 21 × 200 and 29 × 503 queue full", r.codes, r.reasons)
	}
	noRace(t, in)
}

// rejected reads bulwark_admit_rejected_total{reason="queue_full"}.
func rejected(t *testing.T, in *instance) int {
	res, err := http.Get("http://" + in.admin + "/metrics")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(readAll(t, res), "\n") {
		if v, ok := strings.CutPrefix(line, `bulwark_admit_rejected_total{reason="queue_full"} `); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
