package app

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"bulwark/internal/config"
	"bulwark/internal/httperr"
	"bulwark/internal/memwatch"
	"bulwark/internal/observe"
	"bulwark/internal/supervise"
	"bulwark/internal/tlsconf"
)

// adminServer ties the observe server to the running pieces: it assembles
// the once-a-second Snapshot and turns supervisor restarts into dashboard
// events.
type adminServer struct {
	a   *App
	srv *observe.Server

	mu           sync.Mutex
	lastRestarts map[string]int
	self         observe.ProcInfo
	selfAt       time.Time
}

func newAdminServer(a *App, cfg *config.Config) (*adminServer, error) {
	// Counts handed over by an upgrade are not new restarts.
	as := &adminServer{a: a, lastRestarts: maps.Clone(a.restartCounts())}
	if as.lastRestarts == nil {
		as.lastRestarts = map[string]int{}
	}
	srv, err := observe.New(observe.Options{
		Listen: cfg.Admin.Listen,
		Token:  cfg.Admin.Token,
		// A generated token guards the actions; reads stay open on loopback
		// so the dashboard and a local Prometheus need no setup.
		LoopbackReads: cfg.Sources["admin.token"] == config.SourceGenerated,
		TokenFile:     generatedTokenFile(cfg),
		Metrics:       a.set,
		Snapshot:      as.snapshot,
		OnReload:      a.reloadFromAdmin,
		OnRestartApp:  as.restartApp(),
		Version:       a.opts.Version,
		Logger:        a.log,
		Database:      cfg.Observe.Database,
	})
	if err != nil {
		return nil, err
	}
	as.srv = srv
	return as, nil
}

// generatedTokenFile is where run keeps a generated admin token, "" when
// the token was configured.
func generatedTokenFile(cfg *config.Config) string {
	if cfg.Sources["admin.token"] != config.SourceGenerated {
		return ""
	}
	p := filepath.Join(tlsconf.StateDir(cfg.TLS.CertDir), observe.TokenFile)
	if _, err := os.Stat(p); err != nil {
		return "" // kept in memory only: no file to point the CLI to
	}
	return p
}

func (as *adminServer) run(ctx context.Context) error { return as.srv.Run(ctx) }

func (as *adminServer) restartApp() func() error {
	if as.a.sup == nil && as.a.pool == nil {
		return nil
	}
	restart := func() error {
		if as.a.pool != nil {
			return as.a.pool.Restart("manual")
		}
		return as.a.sup.Restart("manual")
	}
	return func() error {
		if err := restart(); err != nil {
			as.a.log.Error("manual restart of the app failed", "err", err)
			return appFailed(err)
		}
		return nil
	}
}

// appFailed marks err, a restart of the app that did not bring it up, as
// the admin API's 502: the body is the reason and the app's last stderr
// lines, so the CLI can print them and exit non-zero.
func appFailed(err error) error {
	// Msg carries the whole text; Err would repeat it in Error().
	return &httperr.Error{Status: http.StatusBadGateway, Reason: "app_failed", Msg: err.Error()}
}

// snapshot reports the state once a second; it reads a few /proc files for
// Bulwark itself (cached for a second) and the watcher's last app sample.
func (as *adminServer) snapshot() observe.Snapshot {
	a := as.a
	cfg := a.config()
	fs := a.front.Stats()
	ad := a.admit.Stats()
	s := observe.Snapshot{
		Bulwark:          as.selfInfo(),
		MemoryLimitBytes: cfg.Memory.LimitBytes(),
		ConnsH1:          fs.H1Open,
		ConnsH2:          fs.H2Open,
		ConnsActive:      fs.H1Active + fs.H2Active,
		ConnsIdle:        fs.H1Idle + fs.H2Idle,
		RequestsTotal:    a.requestsTotal(),
		InFlight:         ad.InFlight,
		Queued:           ad.Queued,
		MaxConcurrency:   ad.MaxConcurrency,
		QueueCap:         ad.Queue,
	}
	s.LatencyP50, s.LatencyP99 = a.access.Latencies()
	for _, u := range a.proxy.Upstreams() {
		s.Upstreams = append(s.Upstreams, observe.UpstreamInfo{Address: u.Address, Up: u.Up})
	}
	s.Certs = a.certStatus()
	// A sample of its own per call: snapshot runs from the sampler and from
	// every /status request at once, and metrics.Read writes into it.
	heap := [1]metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(heap[:])
	if heap[0].Value.Kind() == metrics.KindUint64 {
		s.GoHeapBytes = int64(heap[0].Value.Uint64())
	}
	if m, err := memwatch.Box("", ""); err == nil { // the cgroup's memory when that is smaller
		s.Machine = observe.MachineInfo{MemTotal: m.MemTotal, MemAvailable: m.MemAvailable}
		if mm := cfg.MachineMemory; mm > 0 && mm < m.MemTotal {
			s.Machine.MemTotal = mm
		}
	}
	if a.pool != nil {
		s.App = a.poolInfo(cfg)
		as.noteRestarts(s.App.Restarts, s.App.LastExit)
		if a.pool.Ready() == 0 {
			// The proxy keeps the addresses of the last ready workers, or
			// upstream.address before any was: neither serves now.
			s.Upstreams = []observe.UpstreamInfo{{Up: false}}
		}
	}
	if a.sup != nil {
		st := a.sup.Status()
		tree := a.watch.Last()
		if tree.Root != st.PID {
			// A sample of the process before a restart, or none yet: its
			// PIDs and start times are not the app's.
			tree = memwatch.TreeSample{}
		}
		info := &observe.AppInfo{
			State: st.State, PID: st.PID, Since: st.Since, Restarts: st.Restarts,
			LastExit: st.LastExit, MaxMemory: int64(cfg.App.MaxMemory), RSS: tree.RSS, PSS: tree.PSS,
		}
		if st.State == supervise.StateFailing {
			info.State, info.Stderr = "failing: "+st.Failure, st.Stderr
			tree = memwatch.TreeSample{} // the last sample is of a process that is gone
			info.RSS, info.PSS = 0, 0
		}
		for _, p := range tree.Procs {
			info.Procs = append(info.Procs, observe.ProcInfo{PID: p.PID, RSS: p.RSS, PSS: p.PSS, StartTime: p.StartTime, Cmdline: p.Cmdline})
		}
		s.App = info
		s.Upstreams = supervisedUpstreams(st, s.Upstreams)
		as.noteRestarts(st.Restarts, st.LastExit)
		if cfg.Observe.Database != "" {
			s.DBPoolPerProcess = dbPoolPerProcess(cfg)
		}
	}
	return s
}

// supervisedUpstreams is the upstream status shows for a supervised app:
// the proxy's address while the app serves, otherwise the address of the
// instance starting now ("" when none runs), not up. The proxy keeps the
// last ready instance's address until a new one is ready, which during a
// crash loop with {socket} names a socket that is gone.
func supervisedUpstreams(st supervise.Status, proxied []observe.UpstreamInfo) []observe.UpstreamInfo {
	if st.State == supervise.StateReady {
		return proxied
	}
	return []observe.UpstreamInfo{{Address: st.Address, Up: false}}
}

// dbPoolPerProcess is DB_POOL_SIZE + DB_MAX_OVERFLOW as the app gets them;
// 0 when either is not a number.
func dbPoolPerProcess(cfg *config.Config) int {
	var size, overflow int
	var errs []error
	for _, v := range cfg.AppEnviron() {
		var err error
		switch v.Name {
		case "DB_POOL_SIZE":
			size, err = strconv.Atoi(v.Value)
		case "DB_MAX_OVERFLOW":
			overflow, err = strconv.Atoi(v.Value)
		}
		errs = append(errs, err)
	}
	if errors.Join(errs...) != nil || size < 0 || overflow < 0 {
		return 0
	}
	return size + overflow
}

// noteRestarts adds a dashboard event for every restart counted since the
// last snapshot.
func (as *adminServer) noteRestarts(now map[string]int, lastExit string) {
	as.mu.Lock()
	defer as.mu.Unlock()
	for reason, n := range now {
		if n > as.lastRestarts[reason] {
			detail := ""
			if reason == "crash" {
				detail = lastExit
			}
			as.srv.AddEvent(observe.Event{At: time.Now(), Kind: "restart", Reason: reason, Detail: detail})
			as.lastRestarts[reason] = n
		}
	}
}

func (as *adminServer) selfInfo() observe.ProcInfo {
	as.mu.Lock()
	defer as.mu.Unlock()
	if time.Since(as.selfAt) < time.Second && as.self.PID != 0 {
		return as.self
	}
	pid := os.Getpid()
	info := observe.ProcInfo{PID: pid, StartTime: as.a.started}
	if p, err := memwatch.ProcOf("", pid); err == nil {
		info.RSS, info.PSS, info.Cmdline = p.RSS, p.PSS, p.Cmdline
	} else {
		info.Cmdline = strings.Join(os.Args, " ")
	}
	as.self, as.selfAt = info, time.Now()
	return info
}
