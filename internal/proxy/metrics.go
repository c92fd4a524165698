package proxy

import "github.com/VictoriaMetrics/metrics"

// durationBuckets reach DefaultTimeout so a slow app is visible.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

type proxyMetrics struct {
	codeClass    [6]*metrics.Counter // index: status / 100
	errors       map[string]*metrics.Counter
	headDuration *metrics.PrometheusHistogram
	retries      *metrics.Counter
	failovers    *metrics.Counter // requests sent to another address after a failed connect
	downs        *metrics.Counter // addresses left out of turn after a failed connect
	// dropped counts request header fields not passed to the app: names
	// with "_" (dropUnderscore) and, when those are allowed, names that
	// read as one Bulwark sets (dropReserved).
	dropped [2]*metrics.Counter
}

// Reasons a request header field is dropped; indexes of proxyMetrics.dropped.
const (
	dropUnderscore = iota
	dropReserved
)

func newProxyMetrics(set *metrics.Set) proxyMetrics {
	m := proxyMetrics{
		errors:       make(map[string]*metrics.Counter, len(errorKinds)),
		headDuration: set.GetOrCreatePrometheusHistogramExt("bulwark_upstream_duration_seconds", durationBuckets),
		retries:      set.GetOrCreateCounter("bulwark_upstream_retries_total"),
		failovers:    set.GetOrCreateCounter("bulwark_upstream_failovers_total"),
		downs:        set.GetOrCreateCounter("bulwark_upstream_down_total"),
	}
	m.dropped[dropUnderscore] = set.GetOrCreateCounter(`bulwark_dropped_headers_total{reason="underscore"}`)
	m.dropped[dropReserved] = set.GetOrCreateCounter(`bulwark_dropped_headers_total{reason="reserved"}`)
	for i, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		m.codeClass[i+1] = set.GetOrCreateCounter(`bulwark_upstream_requests_total{code_class="` + class + `"}`)
	}
	for _, k := range errorKinds {
		m.errors[k] = set.GetOrCreateCounter(`bulwark_upstream_errors_total{kind="` + k + `"}`)
	}
	return m
}

func (m *proxyMetrics) countStatus(code int) {
	if i := code / 100; i >= 1 && i <= 5 {
		m.codeClass[i].Inc()
	}
}
