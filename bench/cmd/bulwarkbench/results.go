package main

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Columns of the table, in order.
var columns = []string{srvBulwark, srvNginx, srvHAProxy, srvCaddy, srvUvicorn}

// Row is one line of the table: a figure measured for several servers over
// several runs. Values[server][run] is NaN where a run failed.
type Row struct {
	Key    string
	Label  string
	Target string
	// Judge returns the verdict for the row from the per-run ratios of
	// Bulwark to nginx and the summaries; nil for rows without a target.
	Judge  func(r *Row) string
	Values map[string][]float64
	// Digits after the point in the table.
	Digits int
}

// Results collects rows in the order they were first added, and notes.
type Results struct {
	rows  []*Row
	byKey map[string]*Row
	Notes []string
	Runs  int
}

func newResults(runs int) *Results {
	return &Results{byKey: make(map[string]*Row), Runs: runs}
}

// Row returns the row for key, creating it with label, target and judge.
func (rs *Results) Row(key, label string, digits int, target string, judge func(*Row) string) *Row {
	if r, ok := rs.byKey[key]; ok {
		return r
	}
	r := &Row{Key: key, Label: label, Target: target, Judge: judge, Values: make(map[string][]float64), Digits: digits}
	rs.rows = append(rs.rows, r)
	rs.byKey[key] = r
	return r
}

// Set records v for server in run (0-based).
func (r *Row) Set(server string, run int, v float64) {
	vs := r.Values[server]
	for len(vs) <= run {
		vs = append(vs, math.NaN())
	}
	vs[run] = v
	r.Values[server] = vs
}

// Note adds a line under the table (deduplicated).
func (rs *Results) Note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	for _, n := range rs.Notes {
		if n == s {
			return
		}
	}
	rs.Notes = append(rs.Notes, s)
}

// Spread summarises server's runs.
func (r *Row) Spread(server string) Spread { return spreadOf(r.Values[server]) }

// Ratio is the median over runs of server ÷ base measured in the same run.
func (r *Row) Ratio(server, base string) float64 {
	a, b := r.Values[server], r.Values[base]
	var rs []float64
	for i := range min(len(a), len(b)) {
		if !math.IsNaN(a[i]) && !math.IsNaN(b[i]) && b[i] != 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	return spreadOf(rs).Median
}

// Markdown renders the table.
func (rs *Results) Markdown() string {
	var cols []string
	for _, c := range columns {
		for _, r := range rs.rows {
			if len(r.Values[c]) > 0 {
				cols = append(cols, c)
				break
			}
		}
	}
	var b strings.Builder
	b.WriteString("| measurement |")
	for _, c := range cols {
		b.WriteString(" " + c + " |")
	}
	b.WriteString(" target (issue 7 / 3) | verdict |\n|---|")
	for range cols {
		b.WriteString("---|")
	}
	b.WriteString("---|---|\n")
	for _, r := range rs.rows {
		b.WriteString("| " + r.Label + " |")
		for _, c := range cols {
			b.WriteString(" " + r.cell(c) + " |")
		}
		verdict := ""
		if r.Judge != nil {
			verdict = r.Judge(r)
		}
		fmt.Fprintf(&b, " %s | %s |\n", r.Target, verdict)
	}
	return b.String()
}

// cell is "median [min–max] (ratio×)" with the ratio to nginx from the same run.
func (r *Row) cell(server string) string {
	vs := r.Values[server]
	if len(vs) == 0 {
		return "–"
	}
	s := r.Spread(server)
	if s.N == 0 {
		return "failed"
	}
	out := fmtNum(s.Median, r.Digits)
	if s.N > 1 {
		out += " [" + fmtNum(s.Min, r.Digits) + "–" + fmtNum(s.Max, r.Digits) + "]"
	}
	if s.N < len(vs) {
		out += fmt.Sprintf(" (%d of %d runs)", s.N, len(vs))
	}
	if server != srvNginx && len(r.Values[srvNginx]) > 0 {
		if q := r.Ratio(server, srvNginx); !math.IsNaN(q) && !math.IsInf(q, 0) {
			out += fmt.Sprintf(" **%.2f×**", q)
		}
	}
	return out
}

func fmtNum(v float64, digits int) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.*f", digits, v)
}

// ratioAtMost judges Bulwark ÷ nginx ≤ limit.
func ratioAtMost(limit float64) func(*Row) string {
	return func(r *Row) string {
		q := r.Ratio(srvBulwark, srvNginx)
		if math.IsNaN(q) {
			return "not measured"
		}
		if q <= limit {
			return fmt.Sprintf("met (%.2f×)", q)
		}
		return fmt.Sprintf("**missed** (%.2f×)", q)
	}
}

// idleJudge: ≤ nginx, at the very least ≤ 0.6× Caddy.
func idleJudge(r *Row) string {
	q := r.Ratio(srvBulwark, srvNginx)
	if math.IsNaN(q) {
		return "not measured"
	}
	if q <= 1 {
		return fmt.Sprintf("met (%.2f×)", q)
	}
	c := r.Ratio(srvBulwark, srvCaddy)
	if !math.IsNaN(c) {
		if c <= 0.6 {
			return fmt.Sprintf("**missed** (%.2f×); fallback ≤0.6× caddy met (%.2f×)", q, c)
		}
		return fmt.Sprintf("**missed** (%.2f×); fallback ≤0.6× caddy missed (%.2f×)", q, c)
	}
	return fmt.Sprintf("**missed** (%.2f×)", q)
}

// peakJudge: under 64 MiB and not above nginx.
func peakJudge(r *Row) string {
	s := r.Spread(srvBulwark)
	q := r.Ratio(srvBulwark, srvNginx)
	if s.N == 0 || math.IsNaN(q) {
		return "not measured"
	}
	var miss []string
	if s.Max >= 64 {
		miss = append(miss, fmt.Sprintf("max %.1f MiB ≥ 64", s.Max))
	}
	if q > 1 {
		miss = append(miss, fmt.Sprintf("%.2f× nginx", q))
	}
	if len(miss) > 0 {
		return "**missed** (" + strings.Join(miss, ", ") + ")"
	}
	return fmt.Sprintf("met (%.2f×)", q)
}

// promptJudge: the quick request is answered in tens of milliseconds.
func promptJudge(r *Row) string {
	s := r.Spread(srvBulwark)
	if s.N == 0 {
		return "not measured"
	}
	if s.Max < 100 {
		return fmt.Sprintf("met (max %.0f ms)", s.Max)
	}
	return fmt.Sprintf("**missed** (max %.0f ms)", s.Max)
}

// stackJudge: ≤ nginx + uvicorn, and ≥ 80 % below uvicorn --ssl.
func stackJudge(r *Row) string {
	q := r.Ratio(srvBulwark, srvNginx)
	u := r.Ratio(srvBulwark, srvUvicorn)
	if math.IsNaN(q) || math.IsNaN(u) {
		return "not measured"
	}
	ok1, ok2 := q <= 1, u <= 0.2
	s := fmt.Sprintf("%.2f× nginx+uvicorn, %.0f %% below uvicorn --ssl", q, (1-u)*100)
	if ok1 && ok2 {
		return "met (" + s + ")"
	}
	return "**missed** (" + s + ")"
}

// sortedKeys is for deterministic iteration in tests and notes.
func sortedKeys[M ~map[string]V, V any](m M) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
