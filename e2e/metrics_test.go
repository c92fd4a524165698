package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape returns the admin server's /metrics as series → value.
func scrape(t testing.TB, admin string) map[string]float64 {
	t.Helper()
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// TestMetricsMove causes each event the observability issue lists and
// checks that its series moved, on the running binary's /metrics.
func TestMetricsMove(t *testing.T) {
	requireUvicorn(t)
	appPort := freePort(t)
	in := startBulwark(t, strings.Replace(supervisedConfig(appPort, ""), "[upstream]\n", "[upstream]\nmax_concurrency = 1\n", 1)+
		"\n[limits]\nmax_body = \"1KiB\"\nbody_buffer = \"1KiB\"\n", nil)
	waitFor(t, 30*time.Second, "the app to be ready", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.State == "ready"
	})
	for _, h2 := range []bool{false, true} {
		c := in.client(h2)
		for i := 0; i < 3; i++ {
			res, err := c.Get(in.url("/"))
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
		}
		res, err := c.Post(in.url("/upload"), "text/plain", strings.NewReader(strings.Repeat("x", 2000)))
		if err == nil {
			readAll(t, res) // 413
		}
		if res, err = c.Post(in.url("/upload"), "text/plain", strings.NewReader("small body")); err == nil {
			readAll(t, res)
		}
	}
	// A queue wait: two slow requests and one slot.
	done := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		go func() {
			if res, err := in.client(false).Get(in.url("/slow?s=0.3")); err == nil {
				readAll(t, res)
			}
			done <- struct{}{}
		}()
	}
	<-done
	<-done
	// 431: a head over max_header_bytes.
	c, err := tls.Dial("tcp", in.https, &tls.Config{RootCAs: in.roots, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n", strings.Repeat("b", 20<<10))
	io.ReadAll(c)
	c.Close()
	// A handshake failure: plain HTTP on the TLS port.
	if raw, err := net.Dial("tcp", in.https); err == nil {
		io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadAll(raw)
		raw.Close()
	}
	// An app restart.
	if out, err := in.cli("restart-app", "--admin", in.admin).CombinedOutput(); err != nil {
		t.Fatalf("restart-app: %v %s", err, out)
	}
	waitFor(t, 30*time.Second, "the restart", func() bool {
		s := in.status(t)
		return s.App != nil && s.App.Restarts["manual"] == 1 && s.App.State == "ready"
	})
	res, err := in.client(false).Get(in.url("/")) // held at the gate or served: either way counted
	if err == nil {
		readAll(t, res)
	}
	// The watcher samples the new app on its own tick: wait for its
	// figures rather than for a guessed time.
	var m map[string]float64
	waitFor(t, 10*time.Second, "the watcher to sample the new app", func() bool {
		m = scrape(t, in.admin)
		_, up := m[`bulwark_app_uptime_seconds`]
		return up && m[`bulwark_app_up`] > 0 && m[`bulwark_app_rss_bytes`] > 0 && m[`bulwark_app_processes`] > 0
	})
	positive := []string{
		`bulwark_requests_total{proto="h1",code="2xx"}`,
		`bulwark_requests_total{proto="h2",code="2xx"}`,
		`bulwark_request_duration_seconds_count`,
		`bulwark_request_bytes_total`,
		`bulwark_response_bytes_total`,
		`bulwark_tls_handshakes_total`,
		`bulwark_tls_handshake_failures_total{reason="not_tls"}`,
		`bulwark_refused_total{status="413",reason="body_too_large"}`,
		`bulwark_refused_total{status="431",reason="header_too_large"}`,
		`bulwark_upstream_requests_total{code_class="2xx"}`,
		`bulwark_app_restarts_total{reason="manual"}`,
		`bulwark_app_up`,
		`bulwark_app_rss_bytes`,
		`bulwark_app_processes`,
		`bulwark_queue_wait_seconds_count`,
		`bulwark_memory_limit_bytes`,
		`process_resident_memory_bytes`,
		`go_goroutines`,
	}
	for _, name := range positive {
		if m[name] <= 0 {
			t.Errorf("%s = %v, want > 0", name, m[name])
		}
	}
	present := []string{
		`bulwark_client_connections{proto="h1",state="idle"}`,
		`bulwark_client_connections{proto="h2",state="active"}`,
		`bulwark_inflight_requests`,
		`bulwark_queue_length`,
		`bulwark_spool_memory_bytes`,
		`bulwark_spool_disk_bytes`,
		`bulwark_app_pss_bytes`,
		`bulwark_app_uptime_seconds`,
		`bulwark_gate_held_total`,
	}
	for _, name := range present {
		if _, ok := m[name]; !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}

// TestUpstreamErrorMetric: a refused connection is counted by kind.
func TestUpstreamErrorMetric(t *testing.T) {
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	in := startBulwark(t, withUpstream(dead, ""), nil)
	res, err := in.client(false).Get(in.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	m := scrape(t, in.admin)
	if got := m[`bulwark_upstream_errors_total{kind="connect"}`]; got != 1 {
		t.Errorf(`bulwark_upstream_errors_total{kind="connect"} = %v, want 1`, got)
	}
	if got := m[`bulwark_requests_total{proto="h1",code="5xx"}`]; got != 1 {
		t.Errorf(`bulwark_requests_total{proto="h1",code="5xx"} = %v, want 1`, got)
	}
}
