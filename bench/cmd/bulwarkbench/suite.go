package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// suiteConfig is the suite's command line.
type suiteConfig struct {
	runs      int
	quick     bool
	only      []string
	servers   []string
	idleN     []int
	stackN    []int
	conc      []int
	loadDur   time.Duration
	rate      int // total req/s of the fixed-rate load rows (50 clients); 0: none
	hsDur     time.Duration
	hsWorkers int
	out       string
	sizeMB    int64
	uploadsN  int
}

const mib = 1 << 20

// runSuite runs every section asked for and writes the table.
func runSuite(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("suite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var env Env
	var sc suiteConfig
	var only, servers, idleN, stackN, conc string
	fs.StringVar(&env.BenchDir, "bench-dir", "bench", "the bench directory (configs, app)")
	fs.StringVar(&env.Bulwark, "bulwark", "", "the bulwark binary to measure")
	fs.StringVar(&env.Prof, "bulwark-prof", "", "bulwark built with a pprof listener (bench/cmd/bulwarkprof); empty: no profiles")
	fs.StringVar(&env.Work, "work", "", "work directory (certs, configs, logs, spool dirs); default: a new temp dir")
	fs.IntVar(&env.Port, "port", 8443, "the servers' TLS port on 127.0.0.1")
	fs.IntVar(&env.UpPort, "upstream-port", 8002, "the backend's port on 127.0.0.1")
	fs.IntVar(&sc.runs, "runs", 3, "runs of every measurement (medians and spread over them)")
	fs.BoolVar(&sc.quick, "quick", false, "development mode: 1 run, N=200/1000, 3 s loads")
	fs.StringVar(&only, "only", "idle,load,handshake,spool,stack,edge,profile", "sections to run")
	fs.StringVar(&servers, "servers", "bulwark,nginx,haproxy,caddy", "proxies for the idle, load and handshake sections")
	fs.StringVar(&idleN, "idle-n", "1000,5000", "idle connection counts")
	fs.StringVar(&stackN, "stack-n", "200,1000", "idle connection counts of the whole-stack rows")
	fs.StringVar(&conc, "conc", "50,200", "h2load client counts")
	fs.DurationVar(&sc.loadDur, "load-duration", 10*time.Second, "h2load duration per measurement")
	fs.IntVar(&sc.rate, "rate", 10000, "total req/s of the fixed-rate load rows (50 clients, below saturation); 0: skip them")
	fs.DurationVar(&sc.hsDur, "hs-duration", 3*time.Second, "handshake duration per mode")
	fs.IntVar(&sc.hsWorkers, "hs-workers", 50, "concurrent handshake clients")
	fs.StringVar(&sc.out, "out", "", "markdown results file to write")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sc.only = strings.Split(only, ",")
	sc.servers = strings.Split(servers, ",")
	var err error
	if sc.idleN, err = ints(idleN); err != nil {
		return err
	}
	if sc.stackN, err = ints(stackN); err != nil {
		return err
	}
	if sc.conc, err = ints(conc); err != nil {
		return err
	}
	sc.sizeMB, sc.uploadsN = 20, 10
	if sc.quick {
		sc.runs = 1
		if !flagSet(fs, "idle-n") {
			sc.idleN = []int{200, 1000}
		}
		if !flagSet(fs, "load-duration") {
			sc.loadDur = 3 * time.Second
		}
		if !flagSet(fs, "hs-duration") {
			sc.hsDur = 2 * time.Second
		}
	}
	if env.Bulwark == "" {
		return fmt.Errorf("--bulwark is required (build it with go build -o DIR/bulwark ./cmd/bulwark)")
	}
	if env.Work == "" {
		if env.Work, err = os.MkdirTemp("", "bulwarkbench"); err != nil {
			return fmt.Errorf("creating work dir: %w", err)
		}
	}
	// nginx's workers run as nobody and must reach their temp directories.
	if err := os.MkdirAll(env.Work, 0o755); err != nil {
		return fmt.Errorf("creating work dir: %w", err)
	}
	_ = os.Chmod(env.Work, 0o755)
	if env.BenchDir, err = filepath.Abs(env.BenchDir); err != nil {
		return err
	}
	if env.Self, err = os.Executable(); err != nil {
		return fmt.Errorf("finding this program: %w", err)
	}
	env.ProfAddr = "127.0.0.1:6061"
	env.startTimeout = 30 * time.Second
	env.upstreamAppStart = 60 * time.Second
	if env.Certs, err = GenerateCerts(filepath.Join(env.Work, "certs")); err != nil {
		return err
	}
	s := &suite{env: &env, cfg: sc, res: newResults(sc.runs), log: stderr}
	s.checkTools()
	start := time.Now()
	for _, sec := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"idle", s.idle}, {"load", s.load}, {"handshake", s.handshake},
		{"spool", s.spool}, {"stack", s.stack}, {"edge", s.edge}, {"profile", s.profile},
	} {
		if !slices.Contains(sc.only, sec.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.logf("section %s", sec.name)
		if err := sec.run(ctx); err != nil {
			s.res.Note("section %s stopped: %v", sec.name, err)
			s.logf("section %s stopped: %v", sec.name, err)
		}
	}
	report := s.report(time.Since(start))
	fmt.Fprint(stdout, report.table)
	if sc.out != "" {
		if err := os.WriteFile(sc.out, []byte(report.file), 0o644); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	return ctx.Err()
}

type suite struct {
	env      *Env
	cfg      suiteConfig
	res      *Results
	log      io.Writer
	servers  []string // proxies found on this machine
	profiles []string // pprof summaries for the results file
}

func (s *suite) logf(format string, args ...any) {
	fmt.Fprintf(s.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// checkTools keeps the proxies that are installed and notes the others.
func (s *suite) checkTools() {
	bins := map[string]string{srvBulwark: s.env.Bulwark, srvNginx: "nginx", srvHAProxy: "haproxy", srvCaddy: "caddy"}
	for _, name := range s.cfg.servers {
		bin, ok := bins[name]
		if !ok {
			s.res.Note("unknown server %q ignored", name)
			continue
		}
		if _, err := exec.LookPath(bin); err != nil {
			s.res.Note("%s not measured: %s not found (bench/run.sh installs it)", name, bin)
			continue
		}
		s.servers = append(s.servers, name)
	}
	if _, err := exec.LookPath("h2load"); err != nil {
		s.res.Note("load not measured: h2load not found (Debian package nghttp2-client)")
	}
}

// withServer starts server, runs f on it and stops it.
func (s *suite) withServer(ctx context.Context, server, variant, cert string, f func(*Instance) error) error {
	in, err := s.env.Start(ctx, server, variant, cert)
	if err != nil {
		return err
	}
	defer in.Stop()
	return f(in)
}

func (s *suite) idle(ctx context.Context) error {
	be, err := s.env.StartBackend(ctx, "go")
	if err != nil {
		return err
	}
	defer be.Stop(5 * time.Second)
	for run := range s.cfg.runs {
		for _, proto := range []string{"h1", "h2"} {
			for _, n := range s.cfg.idleN {
				for _, srv := range s.servers {
					err := s.withServer(ctx, srv, varBase, "ecdsa", func(in *Instance) error {
						r, err := MeasureIdle(ctx, s.idleOpts(proto, n, in.Roots))
						if err != nil {
							return err
						}
						s.recordIdle(srv, run, proto, n, r, "idle")
						return nil
					})
					if err != nil {
						s.res.Note("idle %s N=%d %s run %d: %v", proto, n, srv, run+1, err)
						s.logf("idle %s N=%d %s: %v", proto, n, srv, err)
					}
				}
			}
		}
	}
	return nil
}

func (s *suite) idleOpts(proto string, n int, roots []int) IdleOptions {
	return IdleOptions{Addr: s.env.Addr(), Proto: proto, Path: "/", N: n, Roots: roots, Warmup: 20,
		Settle: 2 * time.Second, Parallel: 32, Timeout: 150 * time.Second}
}

// recordIdle stores KB per connection; a run where a connection failed or
// was closed while idle is recorded as failed, with a note.
func (s *suite) recordIdle(srv string, run int, proto string, n int, r IdleResult, kind string) {
	rss, pss := r.KBPerConn()
	s.logf("%s %s N=%d %s: opened %d alive %d in %.1fs, RSS %.1f→%.1f MB (%.1f KB/conn), PSS %.1f→%.1f MB (%.1f KB/conn)",
		kind, proto, n, srv, r.Opened, r.Alive, r.ConnectTime.Seconds(),
		mb(r.Before.RSS), mb(r.After.RSS), rss, mb(r.Before.PSS), mb(r.After.PSS), pss)
	ok := r.Opened == n && r.Alive == n
	if !ok {
		s.res.Note("%s %s N=%d %s run %d: %d opened, %d still open after the wait (first error: %s); run not counted",
			kind, proto, n, srv, run+1, r.Opened, r.Alive, r.FirstErr)
		rss, pss = math.NaN(), math.NaN()
	}
	if kind == "idle" {
		target := "≤ 1.00× nginx (at least ≤ 0.6× caddy)"
		s.res.Row(fmt.Sprintf("idle/%s/%d/rss", proto, n), fmt.Sprintf("idle %s TLS conn, N=%d: KB/conn RSS", proto, n), 1, target, idleJudge).Set(srv, run, rss)
		s.res.Row(fmt.Sprintf("idle/%s/%d/pss", proto, n), fmt.Sprintf("idle %s TLS conn, N=%d: KB/conn PSS", proto, n), 1, target, idleJudge).Set(srv, run, pss)
		return
	}
	total := mb(r.After.PSS)
	if !ok {
		total = math.NaN()
	}
	s.res.Row(fmt.Sprintf("stack/%d/pss", n), fmt.Sprintf("whole stack, %d idle h1 TLS conns: total PSS MiB, all processes (bulwark and nginx columns: + uvicorn app)", n), 1,
		"at 1000: ≤ 1.00× nginx+uvicorn and ≤ 0.20× uvicorn --ssl", stackJudgeAt(n)).Set(srv, run, total)
	s.res.Row(fmt.Sprintf("stack/%d/kb", n), fmt.Sprintf("whole stack, %d idle h1 TLS conns: KB/conn PSS", n), 1, "", nil).Set(srv, run, pss)
}

func stackJudgeAt(n int) func(*Row) string {
	if n != 1000 {
		return nil
	}
	return stackJudge
}

func (s *suite) load(ctx context.Context) error {
	if _, err := exec.LookPath("h2load"); err != nil {
		return err
	}
	be, err := s.env.StartBackend(ctx, "go")
	if err != nil {
		return err
	}
	defer be.Stop(5 * time.Second)
	for run := range s.cfg.runs {
		for _, proto := range []string{"h1", "h2"} {
			for _, c := range s.cfg.conc {
				for _, srv := range s.servers {
					err := s.withServer(ctx, srv, varBase, "ecdsa", func(in *Instance) error {
						r, err := MeasureLoad(ctx, LoadOptions{URL: s.env.URL() + "/", Proto: proto, Conns: c, Threads: 2,
							Duration: s.cfg.loadDur, Warmup: 2000, Roots: in.Roots, WorkDir: s.env.Work})
						if err != nil {
							return err
						}
						s.recordLoad(srv, run, proto, c, r)
						return nil
					})
					if err != nil {
						s.res.Note("load %s c=%d %s run %d: %v", proto, c, srv, run+1, err)
						s.logf("load %s c=%d %s: %v", proto, c, srv, err)
					}
				}
			}
			if s.cfg.rate <= 0 {
				continue
			}
			for _, srv := range s.servers {
				err := s.withServer(ctx, srv, varBase, "ecdsa", func(in *Instance) error {
					r, err := MeasureLoad(ctx, LoadOptions{URL: s.env.URL() + "/", Proto: proto, Conns: rateConns, Threads: 2,
						RatePerConn: s.cfg.rate / rateConns, Duration: s.cfg.loadDur, Warmup: 2000, Roots: in.Roots, WorkDir: s.env.Work})
					if err != nil {
						return err
					}
					s.recordRate(srv, run, proto, r)
					return nil
				})
				if err != nil {
					s.res.Note("load %s at %d req/s %s run %d: %v", proto, s.cfg.rate, srv, run+1, err)
					s.logf("load %s at %d req/s %s: %v", proto, s.cfg.rate, srv, err)
				}
			}
		}
	}
	return nil
}

func (s *suite) recordLoad(srv string, run int, proto string, c int, r LoadResult) {
	s.logf("load %s c=%d %s: %.0f req/s, %d ok, %d failed, %d non-2xx, p50 %.2f ms, p99 %.2f ms, CPU %.2f s/10k, peak RSS %.1f MB",
		proto, c, srv, r.RPS, r.Succeeded, r.Failed, r.Non2xx, r.P50ms, r.P99ms, r.CPUPer10k(), mb(r.PeakRSS))
	rps, p50, p99, cpu := r.RPS, r.P50ms, r.P99ms, r.CPUPer10k()
	if r.Failed > 0 || r.Non2xx > 0 || r.Succeeded == 0 {
		s.res.Note("load %s c=%d %s run %d: %d failed, %d non-2xx of %d; run not counted", proto, c, srv, run+1, r.Failed, r.Non2xx, r.Succeeded)
		rps, p50, p99, cpu = math.NaN(), math.NaN(), math.NaN(), math.NaN()
	}
	k := fmt.Sprintf("load/%s/%d/", proto, c)
	l := fmt.Sprintf("proxied %s c=%d: ", proto, c)
	s.res.Row(k+"rps", l+"req/s", 0, "– (whole-box figure; prefer CPU)", nil).Set(srv, run, rps)
	s.res.Row(k+"p50", l+"p50 ms", 2, "–", nil).Set(srv, run, p50)
	s.res.Row(k+"p99", l+"p99 ms", 2, "≤ 1.00× nginx", ratioAtMost(1)).Set(srv, run, p99)
	s.res.Row(k+"cpu", l+"proxy CPU s / 10k req", 2, "≤ 1.50× nginx", ratioAtMost(1.5)).Set(srv, run, cpu)
}

// rateConns is the number of clients of the fixed-rate load rows.
const rateConns = 50

// recordRate records a fixed-rate load: below saturation, so latency is
// each server's own, not a share of a full machine.
func (s *suite) recordRate(srv string, run int, proto string, r LoadResult) {
	s.logf("load %s at %d req/s %s: %.0f req/s, %d ok, %d failed, %d non-2xx, p50 %.2f ms, p99 %.2f ms, CPU %.2f s/10k",
		proto, s.cfg.rate, srv, r.RPS, r.Succeeded, r.Failed, r.Non2xx, r.P50ms, r.P99ms, r.CPUPer10k())
	p50, p99, cpu := r.P50ms, r.P99ms, r.CPUPer10k()
	if r.Failed > 0 || r.Non2xx > 0 || r.Succeeded == 0 {
		s.res.Note("load %s at %d req/s %s run %d: %d failed, %d non-2xx of %d; run not counted", proto, s.cfg.rate, srv, run+1, r.Failed, r.Non2xx, r.Succeeded)
		p50, p99, cpu = math.NaN(), math.NaN(), math.NaN()
	}
	k := fmt.Sprintf("rate/%s/", proto)
	l := fmt.Sprintf("proxied %s at a fixed %d req/s (%d clients): ", proto, s.cfg.rate, rateConns)
	s.res.Row(k+"p50", l+"p50 ms", 2, "– (report)", nil).Set(srv, run, p50)
	s.res.Row(k+"p99", l+"p99 ms", 2, "– (report)", nil).Set(srv, run, p99)
	s.res.Row(k+"cpu", l+"proxy CPU s / 10k req", 2, "– (report)", nil).Set(srv, run, cpu)
}

func (s *suite) handshake(ctx context.Context) error {
	be, err := s.env.StartBackend(ctx, "go")
	if err != nil {
		return err
	}
	defer be.Stop(5 * time.Second)
	for run := range s.cfg.runs {
		for _, cert := range CertKinds {
			for _, srv := range s.servers {
				err := s.withServer(ctx, srv, varBase, cert, func(in *Instance) error {
					for _, resume := range []bool{false, true} {
						r, err := MeasureHandshakes(ctx, HandshakeOptions{Addr: s.env.Addr(), Path: "/",
							Workers: s.cfg.hsWorkers, Duration: s.cfg.hsDur, Resume: resume, Roots: in.Roots})
						if err != nil {
							return err
						}
						s.recordHandshake(srv, run, cert, resume, r)
					}
					return nil
				})
				if err != nil {
					s.res.Note("handshake %s %s run %d: %v", cert, srv, run+1, err)
					s.logf("handshake %s %s: %v", cert, srv, err)
				}
			}
		}
	}
	return nil
}

func (s *suite) recordHandshake(srv string, run int, cert string, resume bool, r HandshakeResult) {
	mode := "full"
	if resume {
		mode = "resumed"
	}
	s.logf("handshake %s %s %s: %d conns (%.0f/s), %d resumed, %d failed, CPU %.3f ms/conn",
		cert, mode, srv, r.Conns, r.PerSecond(), r.Resumed, r.Failed, r.CPUms())
	rate, cpu := r.PerSecond(), r.CPUms()
	// Every handshake but each worker's first must resume in resumed mode.
	badResume := resume && r.Resumed < r.Conns-int64(s.cfg.hsWorkers)
	if r.Failed > 0 || (!resume && r.Resumed > 0) || badResume {
		s.res.Note("handshake %s %s %s run %d: %d failed, %d of %d resumed (%s); run not counted",
			cert, mode, srv, run+1, r.Failed, r.Resumed, r.Conns, r.FirstErr)
		rate, cpu = math.NaN(), math.NaN()
	}
	name := map[string]string{"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}[cert]
	k := "hs/" + cert + "/" + mode + "/"
	l := fmt.Sprintf("%s handshake, %s: ", mode, name)
	s.res.Row(k+"rate", l+"conn/s", 0, "– (client-bound here)", nil).Set(srv, run, rate)
	target, judge := "–", (func(*Row) string)(nil)
	if cert == "ecdsa" && !resume {
		target, judge = "≤ 1.20× nginx", ratioAtMost(1.2)
	} else if cert == "rsa" && !resume {
		target = "report (Go's RSA is slower)"
	}
	s.res.Row(k+"cpu", l+"proxy CPU ms / conn", 3, target, judge).Set(srv, run, cpu)
}

// spool measures Bulwark and nginx (the guide's buffering proxy) in front of
// the FastAPI app: 10 concurrent uploads and slow downloads, and the
// slow-client isolation probes with one slot to the app.
func (s *suite) spool(ctx context.Context) error {
	app, err := s.env.StartBackend(ctx, "app")
	if err != nil {
		return err
	}
	defer app.Stop(5 * time.Second)
	size := s.cfg.sizeMB * 1000 * 1000
	for run := range s.cfg.runs {
		for _, srv := range []string{srvBulwark, srvNginx, srvHAProxy} {
			if srv == srvHAProxy && !slices.Contains(s.servers, srvHAProxy) {
				continue
			}
			// HAProxy streams bodies (no buffering by default): it is the
			// control of the isolation probe, which it must fail.
			err := s.isolation(ctx, srv, run, size)
			if err != nil {
				s.res.Note("isolation %s run %d: %v", srv, run+1, err)
				s.logf("isolation %s: %v", srv, err)
			}
			if srv == srvHAProxy {
				continue
			}
			err = s.withServer(ctx, srv, varBase, "ecdsa", func(in *Instance) error {
				o := TransferOptions{BaseURL: s.env.URL(), Clients: s.cfg.uploadsN, Size: size, Roots: in.Roots, Timeout: 120 * time.Second}
				up, err := MeasureUploads(ctx, o)
				if err != nil {
					return err
				}
				s.recordTransfer(srv, run, "upload", up)
				o.Rate = 4 * 1000 * 1000
				down, err := MeasureDownloads(ctx, o)
				if err != nil {
					return err
				}
				s.recordTransfer(srv, run, "download", down)
				return nil
			})
			if err != nil {
				s.res.Note("spool %s run %d: %v", srv, run+1, err)
				s.logf("spool %s: %v", srv, err)
			}
		}
	}
	return nil
}

// isolation runs the slow-client probes on srv with one slot to the app.
func (s *suite) isolation(ctx context.Context, srv string, run int, size int64) error {
	return s.withServer(ctx, srv, varIsolate, "ecdsa", func(in *Instance) error {
		for _, upload := range []bool{true, false} {
			o := IsolationOptions{BaseURL: s.env.URL(), Upload: upload, Probes: 5,
				Delay: time.Second, Every: 400 * time.Millisecond, ProbeTimeout: 3 * time.Second}
			if upload {
				o.Size, o.Rate = 240_000, 60_000
			} else {
				o.Size, o.Rate = size, 500_000
			}
			r, err := MeasureIsolation(ctx, o)
			if err != nil {
				return err
			}
			s.recordIsolation(srv, run, upload, r)
		}
		return nil
	})
}

func (s *suite) recordTransfer(srv string, run int, kind string, r TransferResult) {
	s.logf("%s %s: %d ok, %d failed in %.1fs, RSS before %.1f MB, peak %.1f MB, wrote %.1f MB to disk (%s)",
		kind, srv, r.OK, r.Failed, r.Elapsed.Seconds(), mb(r.Before.RSS), mb(r.PeakRSS), mb(r.Written), r.FirstErr)
	peak, written := mb(r.PeakRSS), mb(r.Written)
	if r.Failed > 0 {
		s.res.Note("%s %s run %d: %d of %d failed (%s); run not counted", kind, srv, run+1, r.Failed, r.OK+r.Failed, r.FirstErr)
		peak, written = math.NaN(), math.NaN()
	}
	var label string
	if kind == "upload" {
		label = fmt.Sprintf("%d concurrent %d MB uploads to FastAPI (sha256 checked): ", s.cfg.uploadsN, s.cfg.sizeMB)
	} else {
		label = fmt.Sprintf("%d concurrent slow (4 MB/s) %d MB downloads (sha256 checked): ", s.cfg.uploadsN, s.cfg.sizeMB)
	}
	s.res.Row(kind+"/peak", label+"proxy peak RSS MiB", 1, "< 64 MiB and ≤ 1.00× nginx", peakJudge).Set(srv, run, peak)
	s.res.Row(kind+"/written", label+"MiB written to spool/temp dir", 1, "report", nil).Set(srv, run, written)
}

func (s *suite) recordIsolation(srv string, run int, upload bool, r IsolationResult) {
	kind, label := "download", "quick GET while one client downloads at 500 KB/s, 1 app slot: median ms (haproxy: streaming control)"
	if upload {
		kind, label = "upload", "quick GET while one client uploads at 60 KB/s, 1 app slot: median ms (haproxy: streaming control)"
	}
	med := spreadOf(r.Probes).Median
	s.logf("isolation %s %s: probes %v ms, %d failed (%s), slow client still active %v (%s)",
		kind, srv, r.Probes, r.ProbeFailed, r.FirstProbeErr, r.SlowActive, r.SlowErr)
	if r.ProbeFailed > 0 {
		s.res.Note("isolation %s %s run %d: %d of %d quick requests failed (%s); counted with the time they took",
			kind, srv, run+1, r.ProbeFailed, len(r.Probes), r.FirstProbeErr)
	}
	if !r.SlowActive || r.SlowErr != "" {
		s.res.Note("isolation %s %s run %d: probes sent while the slow client was active: %d, slow client error %q; run not counted",
			kind, srv, run+1, len(r.Probes), r.SlowErr)
		med = math.NaN()
	}
	s.res.Row("isolate/"+kind, label, 1, "tens of ms (not after the slow client)", promptJudge).Set(srv, run, med)
}

// stack measures the whole stack at a few idle connection counts.
func (s *suite) stack(ctx context.Context) error {
	for run := range s.cfg.runs {
		for _, n := range s.cfg.stackN {
			for _, srv := range []string{srvBulwark, srvNginx, srvUvicorn} {
				err := s.withServer(ctx, srv, varStack, "ecdsa", func(in *Instance) error {
					r, err := MeasureIdle(ctx, s.idleOpts("h1", n, in.Roots))
					if err != nil {
						return err
					}
					s.recordIdle(srv, run, "h1", n, r, "stack")
					return nil
				})
				if err != nil {
					s.res.Note("stack N=%d %s run %d: %v", n, srv, run+1, err)
					s.logf("stack N=%d %s: %v", n, srv, err)
				}
			}
		}
	}
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a list of positive integers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func mb(b int64) float64 { return float64(b) / mib }
