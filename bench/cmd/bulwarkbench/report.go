package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report is the table for the terminal and the whole results file.
type report struct {
	table, file string
}

func (s *suite) report(elapsed time.Duration) report {
	var t strings.Builder
	fmt.Fprintf(&t, "Bulwark benchmark, %s, %d run(s) each; cells: median [min–max] over runs, **ratio to nginx** (median of per-run ratios from the same run).\n\n",
		time.Now().Format("2006-01-02 15:04"), s.cfg.runs)
	t.WriteString(s.res.Markdown())
	if len(s.res.Notes) > 0 {
		t.WriteString("\nNotes:\n")
		for _, n := range s.res.Notes {
			t.WriteString("- " + n + "\n")
		}
	}
	var f strings.Builder
	f.WriteString("# Bulwark benchmark results\n\n")
	fmt.Fprintf(&f, "Produced by `bench/run.sh` (bench/README.md) in %s.\n\n", elapsed.Round(time.Second))
	f.WriteString("## Machine and software\n\n")
	for _, l := range s.versions() {
		f.WriteString("- " + l + "\n")
	}
	f.WriteString("\n## Results\n\n")
	f.WriteString(t.String())
	f.WriteString("\n## Per-run values\n\n| row | server | runs |\n|---|---|---|\n")
	for _, r := range s.res.rows {
		for _, srv := range sortedKeys(r.Values) {
			var vs []string
			for _, v := range r.Values[srv] {
				vs = append(vs, fmtNum(v, r.Digits))
			}
			fmt.Fprintf(&f, "| %s | %s | %s |\n", r.Label, srv, strings.Join(vs, ", "))
		}
	}
	if len(s.profiles) > 0 {
		f.WriteString("\n## Profiles of Bulwark (bench/cmd/bulwarkprof)\n\n")
		for _, p := range s.profiles {
			f.WriteString(p + "\n")
		}
	}
	return report{table: t.String(), file: f.String()}
}

// versions describes the machine and each program measured.
func (s *suite) versions() []string {
	out := []string{fmt.Sprintf("%d CPUs (%s), %s", runtime.NumCPU(), cpuModel(), memTotal())}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		out = append(out, "load average at the end: "+strings.Join(strings.Fields(string(b))[:3], " "))
	}
	for _, c := range [][]string{
		{s.env.Bulwark, "version"},
		{"nginx", "-v"},
		{"haproxy", "-v"},
		{"caddy", "version"},
		{"h2load", "--version"},
		{"/usr/bin/python3", "-c", "import sys, uvicorn, fastapi; print('python', sys.version.split()[0], 'uvicorn', uvicorn.__version__, 'fastapi', fastapi.__version__)"},
		{"go", "version"},
	} {
		b, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			continue
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out = append(out, "`"+line+"`")
	}
	return out
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	l, _, _ := strings.Cut(string(b), "\n")
	return strings.Join(strings.Fields(l), " ")
}
