// Package accesslog writes one line per request (time, client, method, path,
// protocol, status, bytes, duration and time spent in the app) as text or
// JSON, and counts requests, their duration and Bulwark's own refusals in
// metrics. It sits first in the handler chain; it does not decide anything
// about the request.
package accesslog

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Format selects the line format.
type Format int

const (
	// Text is a space-separated line, nginx-like.
	Text Format = iota
	// JSON is one JSON object per line.
	JSON
)

// Options configures a Logger.
type Options struct {
	// Writer receives the lines; nil means no access log (metrics are still
	// counted). Each line is written with one Write call.
	Writer io.Writer
	// Format is Text (the zero value) or JSON.
	Format Format
	// Begin, when set, is called before the handler with the request; it
	// returns the request to serve (with, say, a timing record in its
	// context) and what reports the time the request spent in the app,
	// asked after the handler returned. Nil logs no upstream time.
	Begin func(r *http.Request) (*http.Request, UpstreamTimer)
	// Metrics receives the request series; nil means a private set.
	Metrics *metrics.Set
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// UpstreamTimer reports the time a request spent in the app. An interface
// rather than a func: a method value made per request would be an
// allocation.
type UpstreamTimer interface {
	Upstream() time.Duration
}

// Logger is an access-log middleware. It is safe for concurrent use.
type Logger struct {
	opts     Options
	out      atomic.Pointer[output] // nil: no access log
	mu       sync.Mutex             // serialises writes to out's writer
	set      *metrics.Set
	duration *metrics.PrometheusHistogram
	bytesIn  *metrics.Counter
	bytesOut *metrics.Counter
	total    atomic.Uint64
	lat      latencies
	byCode   [2][len(codeClasses)]atomic.Pointer[metrics.Counter] // [h1, h2][codeClass]
}

// Latencies reports the median and 99th percentile duration of the requests
// finished since the previous call (zero when there were none), and starts
// a new period. The admin server calls it once a second.
func (l *Logger) Latencies() (p50, p99 time.Duration) { return l.lat.take() }

// latencies keeps a bounded sample of request durations for one period:
// every duration until the sample is full, then reservoir sampling, so a
// busy second costs no more memory than a quiet one.
type latencies struct {
	mu     sync.Mutex
	sample []time.Duration
	seen   int
	rng    uint64
}

const latencySample = 1024

func (s *latencies) add(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if len(s.sample) < latencySample {
		s.sample = append(s.sample, d)
		return
	}
	// xorshift: cheap, and good enough to pick which sample to replace.
	if s.rng == 0 {
		s.rng = 0x9e3779b97f4a7c15
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 7
	s.rng ^= s.rng << 17
	if i := s.rng % uint64(s.seen); i < latencySample {
		s.sample[i] = d
	}
}

func (s *latencies) take() (p50, p99 time.Duration) {
	s.mu.Lock()
	sample := s.sample
	s.sample, s.seen = make([]time.Duration, 0, len(sample)), 0
	s.mu.Unlock()
	if len(sample) == 0 {
		return 0, 0
	}
	slices.Sort(sample)
	return sample[len(sample)*50/100], sample[min(len(sample)-1, len(sample)*99/100)]
}

// output is where the lines go and in which format.
type output struct {
	w      io.Writer
	format Format
}

// SetOutput sends the lines of requests that finish from now on to w, in
// format f; a nil w stops the access log (metrics are still counted). When
// it returns, no line is being written to the previous writer any more, so
// the caller may close that.
func (l *Logger) SetOutput(w io.Writer, f Format) {
	var o *output
	if w != nil {
		o = &output{w: w, format: f}
	}
	l.mu.Lock()
	l.out.Store(o)
	l.mu.Unlock()
}

// Requests reports how many requests were served since New.
func (l *Logger) Requests() uint64 { return l.total.Load() }

// durationBuckets returns the upper bounds, in seconds, of the le buckets
// of bulwark_request_duration_seconds: Prometheus's defaults from 5 ms to
// 10 s, then 30 s and 60 s, which upstream.read_timeout allows by default.
// Prometheus's le buckets, unlike VictoriaMetrics' vmrange ones, work with
// histogram_quantile in Prometheus and Grafana.
func durationBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
}

// New returns a Logger for o.
func New(o Options) *Logger {
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Logger{
		opts:     o,
		set:      o.Metrics,
		duration: o.Metrics.GetOrCreatePrometheusHistogramExt("bulwark_request_duration_seconds", durationBuckets()),
		bytesIn:  o.Metrics.GetOrCreateCounter("bulwark_request_bytes_total"),
		bytesOut: o.Metrics.GetOrCreateCounter("bulwark_response_bytes_total"),
	}
	l.SetOutput(o.Writer, o.Format)
	return l
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// Middleware logs and counts every request that next serves.
func (l *Logger) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := l.opts.Now()
		var upstream UpstreamTimer
		if l.opts.Begin != nil {
			r, upstream = l.opts.Begin(r)
		}
		rec := &recorder{ResponseWriter: w}
		var body *countingBody
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			// Count and log even when the handler aborts with a panic, then
			// let the panic go on to the connection loop.
			p := recover()
			if p != nil && !rec.wroteHeader {
				rec.status = 499 // aborted before any answer
			}
			var in int64
			if body != nil {
				in = body.n.Load()
			}
			l.record(r, rec, start, in, upstream)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

func (l *Logger) record(r *http.Request, rec *recorder, start time.Time, in int64, upstream UpstreamTimer) {
	now := l.opts.Now()
	d := now.Sub(start)
	status := rec.status
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing: the server sends 200
	}
	if rec.hijacked {
		status = http.StatusSwitchingProtocols
	}
	l.requests(r.ProtoMajor == 2, status).Inc()
	if rec.reason != "" {
		l.set.GetOrCreateCounter(`bulwark_refused_total{status="` + strconv.Itoa(status) + `",reason="` + rec.reason + `"}`).Inc()
	}
	l.total.Add(1)
	l.lat.add(d)
	l.duration.Update(d.Seconds())
	l.bytesIn.Add(int(in))
	l.bytesOut.Add(int(rec.bytes))
	out := l.out.Load()
	if out == nil {
		return
	}
	var up time.Duration
	if upstream != nil {
		up = upstream.Upstream()
	}
	client := r.RemoteAddr
	if host, _, err := net.SplitHostPort(client); err == nil {
		client = host
	}
	bp := bufPool.Get().(*[]byte)
	format := func(f Format) []byte {
		if f == JSON {
			return appendJSON((*bp)[:0], now, client, r, status, rec.bytes, in, d, up, rec.reason)
		}
		return appendText((*bp)[:0], now, client, r, status, rec.bytes, d, up, rec.reason)
	}
	b := format(out.format)
	l.mu.Lock()
	// SetOutput may have run since the line was formatted: the line goes
	// where the lines go now, in their format.
	if cur := l.out.Load(); cur != out {
		if out = cur; out != nil {
			b = format(out.format)
		}
	}
	if out != nil {
		out.w.Write(b)
	}
	l.mu.Unlock()
	*bp = b
	bufPool.Put(bp)
}

func appendText(b []byte, now time.Time, client string, r *http.Request, status int, out int64, d, up time.Duration, reason string) []byte {
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, ' ')
	b = append(b, client...)
	b = append(b, ' ', '"')
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = appendSafe(b, r.URL.RequestURI())
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, '"', ' ')
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, out, 10)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, d.Seconds(), 'f', 4, 64)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, up.Seconds(), 'f', 4, 64)
	if reason != "" {
		b = append(b, " bulwark="...)
		b = append(b, reason...)
	}
	return append(b, '\n')
}

// appendSafe appends s with control characters and quotes escaped, so a
// crafted path cannot forge log lines.
func appendSafe(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

type jsonLine struct {
	Time       string  `json:"time"`
	Client     string  `json:"client"`
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Proto      string  `json:"proto"`
	Host       string  `json:"host"`
	Status     int     `json:"status"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`
	Duration   float64 `json:"duration_s"`
	Upstream   float64 `json:"upstream_s"`
	BulwarkErr string  `json:"bulwark_error,omitempty"`
}

func appendJSON(b []byte, now time.Time, client string, r *http.Request, status int, out, in int64, d, up time.Duration, reason string) []byte {
	j, _ := json.Marshal(jsonLine{
		Time: now.UTC().Format(time.RFC3339Nano), Client: client, Method: r.Method,
		Path: r.URL.RequestURI(), Proto: r.Proto, Host: r.Host, Status: status,
		BytesIn: in, BytesOut: out, Duration: d.Seconds(), Upstream: up.Seconds(), BulwarkErr: reason,
	})
	b = append(b, j...)
	return append(b, '\n')
}

// requests returns the bulwark_requests_total series of a request, made
// on first use and kept: a name built and looked up for every request cost
// an allocation and the set's lock.
func (l *Logger) requests(h2 bool, status int) *metrics.Counter {
	i, j := 0, codeClass(status)
	if h2 {
		i = 1
	}
	if c := l.byCode[i][j].Load(); c != nil {
		return c
	}
	proto := [2]string{"h1", "h2"}[i]
	c := l.set.GetOrCreateCounter(`bulwark_requests_total{proto="` + proto + `",code="` + codeClasses[j] + `"}`)
	l.byCode[i][j].Store(c)
	return c
}

// codeClasses are the code labels of bulwark_requests_total: the class of
// a status, and 499 (the client went away before an answer) on its own.
var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "499", "5xx"}

// codeClass returns the index in codeClasses of status's label.
func codeClass(status int) int {
	switch {
	case status == 499:
		return 4
	case status < 200:
		return 0
	case status < 300:
		return 1
	case status < 400:
		return 2
	case status < 500:
		return 3
	default:
		return 5
	}
}

// recorder captures the status and size of an answer. It keeps the
// optional interfaces of the writer it wraps reachable through Unwrap
// (http.ResponseController) and directly (Flusher, Hijacker).
type recorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	hijacked    bool
	bytes       int64
	reason      string
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
		r.reason = r.Header().Get("X-Bulwark-Error")
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.wroteHeader {
		r.WriteHeader(http.StatusOK)
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return c, brw, err
}

// Unwrap serves http.ResponseController.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts body bytes; the proxy's transport may read it from
// another goroutine, hence the atomic.
type countingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}
