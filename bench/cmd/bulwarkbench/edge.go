package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// textPath is the Go backend's compressible answer: textBody, JSON.
const textPath = "/text"

// textBody is 64 KiB of JSON records, compressible as an API answer is.
func textBody() []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < 64<<10-200; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"user %d","email":"u%d@example.com","tags":["a","beta","%d"],"score":%.2f,"active":%t}`,
			i, i*7919%10007, i*31%9973, i%17, float64(i%1000)/7, i%3 == 0)
	}
	b.WriteString("]")
	return b.Bytes()
}

// staticDir holds the edge section's files: 4k.bin and 1m.bin.
func (e *Env) staticDir() string { return filepath.Join(e.Work, "static") }

// writeStatic creates the edge section's files (pseudo-random bytes, so
// no one compresses them).
func (e *Env) writeStatic() error {
	dir := e.staticDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	_ = os.Chmod(e.Work, 0o755) // nginx's worker (nobody) reads them
	for name, size := range map[string]int{"4k.bin": 4 << 10, "1m.bin": 1 << 20} {
		b := make([]byte, size)
		x := uint32(2463534242)
		for i := range b {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b[i] = byte(x)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

// edgeConfig writes bulwark.toml plus a [[static]] table for staticDir
// into run, and returns its path. [compress] keeps its defaults.
func (e *Env) edgeConfig(run string) (string, error) {
	base, err := os.ReadFile(filepath.Join(e.BenchDir, "bulwark.toml"))
	if err != nil {
		return "", fmt.Errorf("reading bulwark.toml: %w", err)
	}
	conf := string(base) + fmt.Sprintf("\n[[static]]\npath = \"/static/\"\ndir = %q\n", e.staticDir())
	out := filepath.Join(run, "bulwark-edge.toml")
	if err := os.WriteFile(out, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", out, err)
	}
	return out, nil
}

// Accept-Encoding values of the compression rows.
const (
	aeGzip   = "gzip"
	aeChrome = "gzip, deflate, br, zstd" // what Chromium sends: Bulwark picks zstd, nginx gzip
)

// edge measures static files (4 KiB, 1 MiB), compression and 1000
// concurrent Range requests, for Bulwark and nginx in their edge variants.
func (s *suite) edge(ctx context.Context) error {
	if err := s.env.writeStatic(); err != nil {
		return err
	}
	be, err := s.env.StartBackend(ctx, "go")
	if err != nil {
		return err
	}
	defer be.Stop(5 * time.Second)
	for run := range s.cfg.runs {
		for _, srv := range []string{srvBulwark, srvNginx} {
			if !containsStr(s.servers, srv) {
				continue
			}
			err := s.withServer(ctx, srv, varEdge, "ecdsa", func(in *Instance) error {
				return s.edgeRun(ctx, srv, run, in)
			})
			if err != nil {
				s.res.Note("edge %s run %d: %v", srv, run+1, err)
				s.logf("edge %s: %v", srv, err)
			}
		}
	}
	return nil
}

func (s *suite) edgeRun(ctx context.Context, srv string, run int, in *Instance) error {
	load := func(path string, conns int, headers ...string) (LoadResult, error) {
		r, err := MeasureLoad(ctx, LoadOptions{URL: s.env.URL() + path, Proto: "h1", Conns: conns, Threads: 2,
			Duration: s.cfg.loadDur, Warmup: 200, Headers: headers, Roots: in.Roots, WorkDir: s.env.Work})
		if err == nil && (r.Failed > 0 || r.Non2xx > 0 || r.Succeeded == 0) {
			err = fmt.Errorf("%s: %d failed, %d non-2xx of %d", path, r.Failed, r.Non2xx, r.Succeeded)
		}
		return r, err
	}
	for _, f := range []struct {
		name  string
		size  int
		conns int
	}{{"4k.bin", 4 << 10, 50}, {"1m.bin", 1 << 20, 10}} {
		r, err := load("/static/"+f.name, f.conns)
		if err != nil {
			return err
		}
		label := map[string]string{"4k.bin": "4 KiB", "1m.bin": "1 MiB"}[f.name]
		s.logf("edge static %s %s: %.0f req/s, CPU %.2f s/10k", label, srv, r.RPS, r.CPUPer10k())
		s.res.Row("edge/static/"+f.name+"/rps", fmt.Sprintf("static file %s, h1 c=%d: req/s", label, f.conns), 0, "–", nil).Set(srv, run, r.RPS)
		s.res.Row("edge/static/"+f.name+"/cpu", fmt.Sprintf("static file %s, h1 c=%d: server CPU s / 10k req", label, f.conns), 2, "≤ 1.50× nginx", ratioAtMost(1.5)).Set(srv, run, r.CPUPer10k())
	}
	plain, err := load(textPath, 20)
	if err != nil {
		return err
	}
	for _, ae := range []string{aeGzip, aeChrome} {
		r, err := load(textPath, 20, "Accept-Encoding: "+ae)
		if err != nil {
			return err
		}
		size, enc, err := s.encodedSize(textPath, ae)
		if err != nil {
			return err
		}
		mbs := float64(r.Succeeded) * float64(len(textBody())) / mib
		extra := (r.CPU/float64(r.Succeeded) - plain.CPU/float64(plain.Succeeded)) * float64(r.Succeeded)
		msPerMB := extra / mbs * 1000
		ratio := float64(size) / float64(len(textBody()))
		s.logf("edge compress %q %s (%s): %.2f ms CPU per MB beyond proxying, size ratio %.3f", ae, srv, enc, msPerMB, ratio)
		k := "edge/compress/" + ae
		l := fmt.Sprintf("compress 64 KiB JSON, Accept-Encoding %q (bulwark %s): ", ae, map[string]string{aeGzip: "gzip 5", aeChrome: "zstd"}[ae])
		s.res.Row(k+"/cpu", l+"CPU ms per MB beyond plain proxying (nginx gzip_comp_level 6)", 2, "–", nil).Set(srv, run, msPerMB)
		s.res.Row(k+"/ratio", l+"compressed / original size", 3, "–", nil).Set(srv, run, ratio)
	}
	r, err := MeasureLoad(ctx, LoadOptions{URL: s.env.URL() + "/static/1m.bin", Proto: "h1", Conns: 1000, Threads: 2,
		Requests: 1000, Headers: []string{"Range: bytes=1000-600999"}, Roots: in.Roots, WorkDir: s.env.Work})
	if err != nil {
		return err
	}
	peak := float64(r.PeakRSS) / mib
	if r.Failed > 0 || r.Succeeded < 1000 {
		s.res.Note("edge range %s run %d: %d failed of %d; run not counted", srv, run+1, r.Failed, r.Succeeded)
		peak = math.NaN()
	}
	s.logf("edge range %s: 1000 concurrent Range requests, peak RSS %.1f MiB (before %.1f)", srv, peak, float64(r.RSSBefore)/mib)
	s.res.Row("edge/range/peak", "1000 concurrent Range requests (600 KB of a 1 MiB static file): peak RSS MiB", 1, "–", nil).Set(srv, run, peak)
	return nil
}

// encodedSize fetches path once with Accept-Encoding ae and returns the
// body's size on the wire and its Content-Encoding.
func (s *suite) encodedSize(path, ae string) (int, string, error) {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(s.env.Certs["ecdsa"].Cert)
	if err != nil {
		return 0, "", fmt.Errorf("reading the bench CA: %w", err)
	}
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableCompression: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, s.env.URL()+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept-Encoding", ae)
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	enc := res.Header.Get("Content-Encoding")
	if enc == "" {
		return 0, "", fmt.Errorf("GET %s with Accept-Encoding %q came back uncompressed", path, ae)
	}
	return len(b), strings.TrimSpace(enc), nil
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
