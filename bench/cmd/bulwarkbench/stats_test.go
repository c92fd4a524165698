package main

import (
	"math"
	"strings"
	"testing"
)

func TestSpreadOf(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want Spread
	}{
		{"odd", []float64{3, 1, 2}, Spread{Median: 2, Min: 1, Max: 3, N: 3}},
		{"even", []float64{4, 1, 2, 3}, Spread{Median: 2.5, Min: 1, Max: 4, N: 4}},
		{"failed runs skipped", []float64{nan, 5, nan, 7}, Spread{Median: 6, Min: 5, Max: 7, N: 2}},
		{"one", []float64{9}, Spread{Median: 9, Min: 9, Max: 9, N: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := spreadOf(tt.in); got != tt.want {
				t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
	if got := spreadOf([]float64{nan}); got.N != 0 || !math.IsNaN(got.Median) {
		t.Errorf("spreadOf(all failed) = %+v, want N 0 and a NaN median", got)
	}
}

func TestPercentile(t *testing.T) {
	v := make([]float64, 100)
	for i := range v {
		v[i] = float64(100 - i) // 100..1, unsorted on purpose
	}
	tests := []struct {
		q    float64
		want float64
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}}
	for _, tt := range tests {
		if got := percentile(v, tt.q); got != tt.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); !math.IsNaN(got) {
		t.Errorf("percentile(nil) = %v, want NaN", got)
	}
}

func TestRowRatioPairsRuns(t *testing.T) {
	rs := newResults(3)
	r := rs.Row("k", "label", 1, "≤ 1.00× nginx", ratioAtMost(1))
	// Run 2 of bulwark failed; run 3 of nginx failed: only run 1 pairs.
	for i, v := range []float64{10, math.NaN(), 30} {
		r.Set(srvBulwark, i, v)
	}
	for i, v := range []float64{20, 20, math.NaN()} {
		r.Set(srvNginx, i, v)
	}
	if got, want := r.Ratio(srvBulwark, srvNginx), 0.5; got != want {
		t.Errorf("Ratio = %v, want %v (only run 1 has both)", got, want)
	}
	if got, want := r.Judge(r), "met (0.50×)"; got != want {
		t.Errorf("Judge = %q, want %q", got, want)
	}
	if got, want := r.cell(srvBulwark), "20.0 [10.0–30.0] (2 of 3 runs) **0.50×**"; got != want {
		t.Errorf("cell = %q, want %q", got, want)
	}
}

func TestJudges(t *testing.T) {
	row := func(vals map[string]float64) *Row {
		r := newResults(1).Row("k", "l", 1, "", nil)
		for srv, v := range vals {
			r.Set(srv, 0, v)
		}
		return r
	}
	tests := []struct {
		name  string
		judge func(*Row) string
		vals  map[string]float64
		want  string
	}{
		{"idle met", idleJudge, map[string]float64{srvBulwark: 15, srvNginx: 15.5, srvCaddy: 36}, "met"},
		{"idle missed, caddy fallback met", idleJudge, map[string]float64{srvBulwark: 20, srvNginx: 15.5, srvCaddy: 36}, "fallback ≤0.6× caddy met"},
		{"idle missed both", idleJudge, map[string]float64{srvBulwark: 30, srvNginx: 15.5, srvCaddy: 36}, "fallback ≤0.6× caddy missed"},
		{"cpu within 1.5", ratioAtMost(1.5), map[string]float64{srvBulwark: 0.7, srvNginx: 0.5}, "met"},
		{"cpu over 1.5", ratioAtMost(1.5), map[string]float64{srvBulwark: 0.8, srvNginx: 0.5}, "**missed**"},
		{"peak over 64 MiB", peakJudge, map[string]float64{srvBulwark: 70, srvNginx: 80}, "max 70.0 MiB ≥ 64"},
		{"peak above nginx", peakJudge, map[string]float64{srvBulwark: 30, srvNginx: 25}, "1.20× nginx"},
		{"stack met", stackJudge, map[string]float64{srvBulwark: 50, srvNginx: 58, srvUvicorn: 300}, "met"},
		{"stack not 80 % below uvicorn", stackJudge, map[string]float64{srvBulwark: 70, srvNginx: 80, srvUvicorn: 300}, "**missed**"},
		{"prompt", promptJudge, map[string]float64{srvBulwark: 3}, "met"},
		{"not prompt", promptJudge, map[string]float64{srvBulwark: 4000}, "**missed**"},
		{"no nginx", ratioAtMost(1), map[string]float64{srvBulwark: 1}, "not measured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.judge(row(tt.vals)); !strings.Contains(got, tt.want) {
				t.Errorf("judge(%v) = %q, want it to contain %q", tt.vals, got, tt.want)
			}
		})
	}
}

func TestMarkdownColumnsAndCells(t *testing.T) {
	rs := newResults(1)
	rs.Row("a", "idle", 1, "≤ 1.00× nginx", idleJudge).Set(srvBulwark, 0, 10)
	rs.Row("a", "idle", 1, "≤ 1.00× nginx", idleJudge).Set(srvNginx, 0, 20)
	rs.Row("b", "upload", 1, "report", nil).Set(srvNginx, 0, math.NaN())
	got := rs.Markdown()
	for _, want := range []string{
		"| measurement | bulwark | nginx | target (issue 7 / 3) | verdict |",
		"| idle | 10.0 **0.50×** | 20.0 | ≤ 1.00× nginx | met (0.50×) |",
		"| upload | – | failed | report |  |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Markdown() =\n%s\nwant a line %q", got, want)
		}
	}
	if strings.Contains(got, srvCaddy) {
		t.Errorf("Markdown() =\n%s\nwant no caddy column (never measured)", got)
	}
}

func TestInts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1000,5000", []int{1000, 5000}, false},
		{" 50 , 200", []int{50, 200}, false},
		{"0", nil, true},
		{"x", nil, true},
	}
	for _, tt := range tests {
		got, err := ints(tt.in)
		if (err != nil) != tt.wantErr || len(got) != len(tt.want) {
			t.Errorf("ints(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("ints(%q) = %v, want %v", tt.in, got, tt.want)
			}
		}
	}
}
