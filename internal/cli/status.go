package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"bulwark/internal/observe"
)

const statusUsage = `Usage: bulwark status [--config FILE] [--admin ADDR] [--token T] [--json]

Show one screen about a running Bulwark: memory of Bulwark and of each app
process, client connections, requests, queue, restarts and the memory budget.
` + adminFindText + `

Flags:
`

// parseFlags parses args into fs, printing usage on -h and on bad flags.
func parseAdminCmdFlags(fs *flag.FlagSet, usage string, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage == "" { // hidden
				return
			}
			name, u := flag.UnquoteUsage(f)
			fmt.Fprintf(stderr, "  --%s %s\n    \t%s\n", f.Name, name, u)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

// runStatus implements "bulwark status".
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "print the /status JSON document")
	if err := parseAdminCmdFlags(fs, statusUsage, args, stderr); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	st, raw, err := c.status(ctx, false)
	if err != nil {
		return err
	}
	if *asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			buf.Reset()
			buf.Write(raw)
		}
		buf.WriteByte('\n')
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	_, err = io.WriteString(stdout, renderStatus(st, c.addr, statusLayout{width: 80}))
	return err
}

// statusLayout bounds what renderStatus prints.
type statusLayout struct {
	width    int  // columns; lines are cut to fit
	maxProcs int  // app processes listed; 0 means all
	noWorker bool // leave out the worker lines (top shows them as a table)
}

// renderStatus formats st as the one screen of "bulwark status".
func renderStatus(st *observe.Status, addr string, lay statusLayout) string {
	var b strings.Builder
	line := func(format string, a ...any) {
		b.WriteString(fitWidth(fmt.Sprintf(format, a...), lay.width))
		b.WriteByte('\n')
	}
	line("bulwark %s · up %s · admin %s", st.Version, uptimeAt(st.Time, st.Bulwark.StartTime), addr)
	b.WriteByte('\n')

	line("%-10s %7s %9s %9s %7s  %s", "PROCESS", "PID", "RSS", "PSS", "UPTIME", "COMMAND")
	proc := func(name string, p observe.ProcInfo) {
		line("%-10s %7d %9s %9s %7s  %s", name, p.PID, fmtBytesOrDash(p.RSS), fmtBytesOrDash(p.PSS),
			uptimeAt(st.Time, p.StartTime), p.Cmdline)
	}
	proc("bulwark", st.Bulwark)
	app := st.App
	if app != nil {
		procs := app.Procs
		hidden := 0
		if lay.maxProcs > 0 && len(procs) > lay.maxProcs {
			hidden = len(procs) - lay.maxProcs
			procs = procs[:lay.maxProcs]
		}
		for i, p := range procs {
			name := "app"
			if i > 0 {
				name = "  └ child"
			}
			proc(name, p)
		}
		if hidden > 0 {
			line("  … %d more app processes", hidden)
		}
		// The total is what the machine pays: Bulwark and the app together.
		line("%-10s %7s %9s %9s  %s", "total", "", fmtBytesOrDash(st.Bulwark.RSS+max(app.RSS, 0)),
			fmtBytesOrDash(totalPSS(st.Bulwark.PSS, app.PSS, app.RSS)), "bulwark + app")
	}
	b.WriteByte('\n')

	if app != nil {
		line("%-12s %s for %s · restarts %s", "APP", app.State, uptimeAt(st.Time, app.Since), fmtRestarts(app.Restarts))
		if app.LastExit != "" {
			line("%-12s last exit: %s", "", app.LastExit)
		}
		workers := app.Workers
		if lay.noWorker {
			workers = nil
		}
		for _, w := range workers { // a pool: one row per worker
			up := "-" // no process: nothing is up
			if w.PID > 0 {
				up = uptimeAt(st.Time, w.Started)
			}
			line("%-12s %d pid %d %s · RSS %s · served %d · in flight %d · up %s · last recycle %s", "  worker",
				w.Index, w.PID, w.State, fmtBytes(w.RSS), w.Served, w.InFlight, up, cmp.Or(w.LastRecycle, "-"))
		}
	} else {
		line("%-12s none supervised", "APP")
	}
	if len(st.Upstreams) > 0 {
		line("%-12s %s", "UPSTREAM", fmtUpstreams(st.Upstreams))
	}
	line("%-12s h1 %d · h2 %d · active %d · idle %d", "CONNECTIONS", st.ConnsH1, st.ConnsH2, st.ConnsActive, st.ConnsIdle)
	line("%-12s %s/s · in flight %d/%d · queued %d/%d · p50 %s · p99 %s", "REQUESTS",
		fmtRate(st.RequestsPerSecond), st.InFlight, st.MaxConcurrency, st.Queued, st.QueueCap,
		fmtLatency(st.LatencyP50Seconds), fmtLatency(st.LatencyP99Seconds))
	line("%-12s Go heap %s of %s", "MEMORY", fmtBytes(st.GoHeapBytes), fmtLimit(st.GoHeapBytes, st.MemoryLimitBytes, "limit"))
	if app != nil {
		line("%-12s %s", "", appMemory(app))
	}
	if m := st.Machine; m.MemTotal > 0 {
		line("%-12s machine %s available of %s (%d%%)", "", fmtBytes(m.MemAvailable), fmtBytes(m.MemTotal),
			fmtPercent(m.MemAvailable, m.MemTotal))
	}
	if d := st.DB; d != nil {
		switch {
		case d.Error != "":
			line("%-12s %s probe failing: %s", "DATABASE", d.Kind, d.Error)
		case d.Connections < 0:
			line("%-12s %s not probed yet", "DATABASE", d.Kind)
		default:
			renderDB(line, d)
		}
	}
	renderCerts(line, st.Time, st.Certs)
	return b.String()
}

// renderDB writes the database lines: the count, the longest query, the
// app's connections against its pools' budget, and the groups.
func renderDB(line func(string, ...any), d *observe.DBStatus) {
	longest := "no query running"
	if d.LongestQuerySeconds > 0 {
		longest = "longest query " + fmtSeconds(d.LongestQuerySeconds)
	}
	line("%-12s %s · %d connections (the probe's left out) · %s", "DATABASE", d.Kind, d.Connections, longest)
	if d.User != "" {
		budget := ""
		if d.AppBudget > 0 {
			budget = fmt.Sprintf(" of %d (DB_POOL_SIZE + DB_MAX_OVERFLOW %d × %d app processes)",
				d.AppBudget, d.AppBudget/int64(max(d.AppProcesses, 1)), d.AppProcesses)
		}
		line("%-12s user %s: %d%s", "", d.User, d.AppConnections, budget)
	}
	if len(d.Groups) > 0 {
		var parts []string
		for _, g := range d.Groups {
			parts = append(parts, fmt.Sprintf("%s %s %d", g.User, g.State, g.Count))
		}
		line("%-12s %s", "", strings.Join(parts, " · "))
	}
}

// fmtSeconds formats a duration in seconds: "850ms", "3.2s", "4m10s".
func fmtSeconds(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// fmtUpstreams lists the app's addresses; with several, each says whether
// it takes requests.
func fmtUpstreams(us []observe.UpstreamInfo) string {
	if len(us) == 1 {
		switch u := us[0]; {
		case u.Up:
			return u.Address
		case u.Address == "":
			return "none: the app is not ready"
		default:
			return u.Address + " (not ready)"
		}
	}
	parts := make([]string, len(us))
	for i, u := range us {
		state := "up"
		if !u.Up {
			state = "down"
		}
		parts[i] = u.Address + " " + state
	}
	return strings.Join(parts, " · ")
}

// fmtRestarts formats restart counts in a fixed order. Clean exits (an app
// that recycles itself) are shown only when there were some, so the line
// of an app that never does keeps to 80 columns.
func fmtRestarts(m map[string]int) string {
	var parts []string
	for _, k := range []string{"crash", "memory", "manual", "reload"} {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	if m["exit"] > 0 {
		parts = append(parts, fmt.Sprintf("exit %d", m["exit"]))
	}
	return strings.Join(parts, " ")
}

// limitOf formats "LIMIT NAME (P%)", or "no NAME" when limit is zero.
// appMemory is the app's memory line. max_memory is a limit per process
// tree: a single app's whole tree, or each worker of a pool. A pool's line
// gives its total, then sets its largest worker against the limit.
func appMemory(app *observe.AppInfo) string {
	if len(app.Workers) == 0 {
		return fmt.Sprintf("app RSS %s of %s", fmtBytes(app.RSS), fmtLimit(app.RSS, app.MaxMemory, "max_memory"))
	}
	var largest int64
	for _, w := range app.Workers {
		largest = max(largest, w.RSS)
	}
	limit := "· no max_memory"
	if app.MaxMemory > 0 { // short enough for 80 columns
		limit = fmt.Sprintf("of %s each (%d%%)", fmtBytes(app.MaxMemory), fmtPercent(largest, app.MaxMemory))
	}
	return fmt.Sprintf("app RSS %s · worker max %s %s", fmtBytes(app.RSS), fmtBytes(largest), limit)
}

func fmtLimit(used, limit int64, name string) string {
	if limit <= 0 {
		return "no " + name
	}
	return fmt.Sprintf("%s %s (%d%%)", fmtBytes(limit), name, fmtPercent(used, limit))
}

func fmtPercent(part, whole int64) int64 {
	if whole <= 0 {
		return 0
	}
	return part * 100 / whole
}

// fmtBytes formats n with a binary unit: "512 B", "20.0 MiB".
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// totalPSS adds Bulwark's and the app's PSS; 0 (shown as "-") when one
// of them is unknown while the other is not, as a partial sum would mislead.
func totalPSS(self, app, appRSS int64) int64 {
	switch {
	case self <= 0:
		return 0
	case app <= 0 && appRSS > 0:
		return 0
	}
	return self + max(app, 0)
}

func fmtBytesOrDash(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmtBytes(n)
}

// since formats now-t as a short uptime: "45s", "12m05s", "3h07m", "2d04h".
func uptimeAt(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
	}
}

func fmtRate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// seconds formats a latency: "12ms", "1.25s", "-" for none.
func fmtLatency(s float64) string {
	switch {
	case s <= 0:
		return "-"
	case s < 1:
		return fmt.Sprintf("%.0fms", s*1000)
	default:
		return fmt.Sprintf("%.2fs", s)
	}
}

// fit cuts s to width columns (runes), ending it with "…" when cut.
func fitWidth(s string, width int) string {
	s = strings.TrimRight(s, " ")
	if width <= 0 || utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
