package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"bulwark/internal/observe"
)

const topUsage = `Usage: bulwark top [--config FILE] [--admin ADDR] [--token T] [--interval 1s]

Show the status of a running Bulwark live, with sparklines of its memory,
the app's memory and requests per second. Press q (or Ctrl-C) to quit.
` + adminFindText + `

Flags:
`

// Terminal control sequences.
const (
	ansiHome       = "\x1b[H"
	ansiClear      = "\x1b[2J"
	ansiClearBelow = "\x1b[J"
	ansiHideCursor = "\x1b[?25l"
	ansiShowCursor = "\x1b[?25h"
)

// sparkChars are the eight levels of a sparkline.
var sparkChars = []rune("▁▂▃▄▅▆▇█")

// runTop implements "bulwark top".
func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("top", flag.ContinueOnError)
	var af adminFlags
	af.register(fs)
	interval := fs.Duration("interval", time.Second, "refresh `interval`")
	frames := fs.Int("frames", 0, "") // hidden: stop after N frames (tests)
	if err := parseAdminCmdFlags(fs, topUsage, args, stderr); err != nil {
		return err
	}
	if *interval < 100*time.Millisecond {
		*interval = 100 * time.Millisecond
	}
	c, err := af.client()
	if err != nil {
		return err
	}

	// A terminal gets a screen redrawn in place; anything else gets frames
	// one after another, separated by a blank line.
	tty := false
	width, height := 80, 24
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
		if w, h, err := term.GetSize(int(f.Fd())); err == nil && w > 20 && h > 10 {
			width, height = w, h
		}
		// Leave the last column free: a line that fills it puts many
		// terminals in a pending wrap, where clearing to the end of the
		// line eats its last character.
		width--
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nl := "\n"
	if tty && term.IsTerminal(int(os.Stdin.Fd())) {
		old, err := term.MakeRaw(int(os.Stdin.Fd()))
		if err == nil {
			nl = "\r\n" // raw mode: no newline translation
			defer func() { _ = term.Restore(int(os.Stdin.Fd()), old) }()
			// The reader ends with the process: a read on a terminal
			// cannot be interrupted portably.
			go readKeys(os.Stdin, cancel)
		}
	}
	if tty {
		fmt.Fprint(stdout, ansiHideCursor+ansiClear)
		defer fmt.Fprint(stdout, ansiShowCursor+nl)
	}

	t := time.NewTicker(*interval)
	defer t.Stop()
	for n := 1; ; n++ {
		st, _, err := c.status(ctx, true)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && n == 1 {
			return err // nothing running there: say so, as status does
		}
		frame := renderTop(st, err, c.addr, width, height, tty)
		if tty {
			frame = ansiHome + strings.ReplaceAll(frame, "\n", ansiClearLine+nl) + ansiClearBelow
		} else if n > 1 {
			frame = "\n" + frame
		}
		if _, err := io.WriteString(stdout, frame); err != nil {
			return err
		}
		if *frames > 0 && n >= *frames {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ansiClearLine clears the rest of a line, so a shorter frame leaves no
// remains of the previous one.
const ansiClearLine = "\x1b[K"

// readKeys cancels on q, Q or Ctrl-C (raw mode delivers it as a byte).
func readKeys(r io.Reader, cancel context.CancelFunc) {
	buf := make([]byte, 16)
	for {
		n, err := r.Read(buf)
		for _, b := range buf[:n] {
			if b == 'q' || b == 'Q' || b == 3 {
				cancel()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// renderTop formats one frame: the status screen, sparklines and a footer,
// within width×height. With a fetch error, it shows the error instead of
// the status (the last frame is gone by then).
func renderTop(st *observe.Status, fetchErr error, addr string, width, height int, tty bool) string {
	var b strings.Builder
	if fetchErr != nil {
		b.WriteString(fitWidth("bulwark top · "+addr, width) + "\n\n")
		b.WriteString(fitWidth("cannot fetch status: "+fetchErr.Error(), width) + "\n")
	} else {
		// Lines besides the process list: header 2, table head 1, bulwark
		// 1, app total 1, blank 1, app 2, conns 1, requests 1, memory 3,
		// db 1, blank 1, sparklines 3, footer 1 = 20.
		room := max(height-20, 1) // lines for the app's processes and workers
		maxProcs, shown := room, 0
		var workers []observe.WorkerInfo
		if st.App != nil {
			workers = st.App.Workers
		}
		if n := len(workers); n > 0 {
			// The worker table (head, rows, blank) shares the room with
			// the process list, which keeps its main process.
			avail := room - min(len(st.App.Procs), 1) - 2
			shown = n
			if n > avail {
				shown = max(avail-1, 1) // and a line saying how many are left out
			}
			maxProcs = max(room-topWorkerLines(n, shown), 1)
		}
		b.WriteString(renderStatus(st, addr, statusLayout{width: width, maxProcs: maxProcs, noWorker: true}))
		b.WriteByte('\n')
		b.WriteString(renderWorkers(workers, shown, st.Time, width))
		if h := st.History; h != nil {
			var appRSS []int64
			if st.App != nil {
				appRSS = h.AppRSS
			}
			b.WriteString(sparkLine("bulwark RSS", int64sToFloats(h.BulwarkRSS), false, fmtBytes(st.Bulwark.RSS), width) + "\n")
			if st.App != nil {
				b.WriteString(sparkLine("app RSS", int64sToFloats(appRSS), false, fmtBytes(st.App.RSS), width) + "\n")
			}
			b.WriteString(sparkLine("req/s", h.RequestsPerSec, true, fmtRate(st.RequestsPerSecond), width) + "\n")
		}
	}
	if tty {
		b.WriteString(fitWidth("q quit", width) + "\n")
	}
	return b.String()
}

// topWorkerLines is the number of lines renderWorkers writes.
func topWorkerLines(total, shown int) int {
	switch {
	case total == 0:
		return 0
	case shown < total:
		return shown + 3
	}
	return shown + 2
}

// renderWorkers formats the pool's workers as a table, at most shown rows
// and a line saying how many are left out; nothing for a single app.
func renderWorkers(ws []observe.WorkerInfo, shown int, now time.Time, width int) string {
	if len(ws) == 0 {
		return ""
	}
	var b strings.Builder
	row := func(format string, a ...any) {
		b.WriteString(fitWidth(fmt.Sprintf(format, a...), width) + "\n")
	}
	const format = "%-6s %7s %-8s %8s %8s %7s %6s %6s  %s"
	row(format, "WORKER", "PID", "STATE", "RSS", "PSS", "SERVED", "FLIGHT", "AGE", "LAST RECYCLE")
	for _, w := range ws[:min(shown, len(ws))] {
		pid := "-"
		if w.PID > 0 {
			pid = strconv.Itoa(w.PID)
		}
		row(format, strconv.Itoa(w.Index), pid, fitWidth(w.State, 8), fmtBytesOrDash(w.RSS), fmtBytesOrDash(w.PSS),
			strconv.FormatInt(w.Served, 10), strconv.Itoa(w.InFlight), uptimeAt(now, w.Started), cmp.Or(w.LastRecycle, "-"))
	}
	if shown < len(ws) {
		row("  … %d more workers", len(ws)-shown)
	}
	b.WriteByte('\n')
	return b.String()
}

func int64sToFloats(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// sparkLine formats "label  ▁▂▃…  value" in width columns, with the latest
// samples at the right.
func sparkLine(label string, v []float64, fromZero bool, value string, width int) string {
	const labelW, valueW = 12, 11
	n := max(width-labelW-valueW-2, 4)
	if len(v) > n {
		v = v[len(v)-n:]
	}
	return fmt.Sprintf("%-*s %-*s %*s", labelW, label, n, sparkline(v, fromZero), valueW, value)
}

// sparkline draws v with eight levels between its minimum (or zero, if
// fromZero) and its maximum; a flat series is drawn at the lowest level.
func sparkline(v []float64, fromZero bool) string {
	if len(v) == 0 {
		return ""
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	if fromZero {
		lo = min(lo, 0)
	}
	out := make([]rune, len(v))
	for i, x := range v {
		lvl := 0
		if hi > lo {
			lvl = int(math.Round((x - lo) / (hi - lo) * float64(len(sparkChars)-1)))
		}
		out[i] = sparkChars[min(max(lvl, 0), len(sparkChars)-1)]
	}
	return string(out)
}
