package app

import (
	"fmt"
	"net/http"
	"strconv"

	"bulwark/internal/config"
	"bulwark/internal/memwatch"
	"bulwark/internal/observe"
	"bulwark/internal/proxy"
	"bulwark/internal/supervise"
)

// usesPool reports whether cfg runs the app as a pool of workers: several
// of them, or one with a recycling rule. One worker without any is the
// single supervised app, exactly as before pools existed.
func usesPool(cfg *config.Config) bool {
	a := cfg.App
	return a.Workers != 1 || a.MaxRequests > 0 || a.MaxLifetime > 0 || a.RequestTimeout > 0
}

// poolSize is the number of workers cfg asks for, and why.
func poolSize(cfg *config.Config) (int, string) {
	machine := cfg.MachineMemory
	if box, err := memwatch.Box("", ""); err == nil && (machine <= 0 || box.MemTotal < machine) {
		machine = box.MemTotal
	}
	return cfg.PoolSize(machine, cfg.Memory.LimitBytes())
}

// poolNote is what check says about the pool: how many workers, and why.
func poolNote(cfg *config.Config) []string {
	if len(cfg.App.Command) == 0 || !usesPool(cfg) {
		return nil
	}
	n, why := poolSize(cfg)
	return []string{fmt.Sprintf("app.workers: the app runs as %d workers (%s)", n, why)}
}

// newPool builds the pool and one memory watcher per worker.
func (a *App) newPool(cfg *config.Config) (*supervise.Pool, error) {
	n, why := poolSize(cfg)
	a.watches = make([]*memwatch.Watcher, n)
	// One source for all: one walk of /proc per tick serves every worker,
	// and the cgroup is found once.
	src := memwatch.NewSource("", "")
	for i := range n {
		a.watches[i] = memwatch.New(memwatch.Options{
			Interval: cfg.App.CheckInterval.D(),
			Limit:    int64(cfg.App.MaxMemory), // per worker
			Grace:    3 * cfg.App.CheckInterval.D(),
			OnExceed: func(e memwatch.Exceed) { a.onWorkerMemoryExceeded(i, e) },
			Logger:   a.log.With("worker", i),
			Source:   src,
			// Metrics: a private set each; the pool's series below carry
			// the worker label.
		})
		// By index, never by PID: a recycle must not mint new series.
		w, label := a.watches[i], `{worker="`+strconv.Itoa(i)+`"}`
		a.set.GetOrCreateGauge("bulwark_app_worker_rss_bytes"+label, func() float64 { return float64(w.Last().RSS) })
		a.set.GetOrCreateGauge("bulwark_app_worker_pss_bytes"+label, func() float64 { return float64(w.Last().PSS) })
	}
	a.log.Debug("app pool size", "workers", n, "why", why)
	return supervise.NewPool(a.poolOptions(cfg, n))
}

// poolOptions turns cfg into the pool's options.
func (a *App) poolOptions(cfg *config.Config, n int) supervise.PoolOptions {
	app := a.superviseOptions(cfg)
	app.OnAddress, app.OnStart, app.ZeroDowntime = nil, nil, nil
	return supervise.PoolOptions{
		App:               app,
		Workers:           n,
		MaxRequests:       cfg.App.MaxRequests,
		MaxRequestsJitter: cfg.App.MaxRequestsJitter,
		MaxLifetime:       cfg.App.MaxLifetime.D(),
		RequestTimeout:    cfg.App.RequestTimeout.D(),
		OnAddresses: func(addrs []string) {
			if err := a.proxy.SetUpstream(addrs...); err != nil {
				a.log.Error("switching the upstream addresses failed", "addrs", addrs, "err", err)
			}
		},
		OnWorkerStart: func(i, pid int) { a.watches[i].Watch(pid) },
		WorkerFits:    a.workerFits,
		Route: func(r *http.Request, addr string) *http.Request {
			return r.WithContext(proxy.WithUpstream(r.Context(), addr))
		},
	}
}

// workerFits reports whether a second copy of worker i fits next to the
// running processes, as secondInstanceFits does for the single app.
func (a *App) workerFits(i int) bool { return a.copyFits(a.watches[i]) }

// onWorkerMemoryExceeded recycles worker i for memory: gracefully and one
// at a time under the graceful rule, at once (old process first) under
// the hard one.
func (a *App) onWorkerMemoryExceeded(i int, e memwatch.Exceed) {
	s := e.Sample
	a.log.Warn("app worker memory above its limit: recycling it", "worker", i, "hard", e.Hard, "rule", e.Reason,
		"rss", s.RSS, "pss", s.PSS, "limit", int64(a.config().App.MaxMemory), "available", e.Available)
	go func() {
		recycle := func() error { return a.pool.Recycle(i, supervise.ReasonMemory) }
		if e.Hard {
			recycle = func() error { return a.pool.RecycleHard(i) }
		}
		if err := recycle(); err != nil {
			a.log.Error("memory recycle of an app worker failed", "worker", i, "err", err)
		}
	}()
}

// poolInfo is the app's part of the status for a pool: the pool as one
// app, with one row per worker.
func (a *App) poolInfo(cfg *config.Config) *observe.AppInfo {
	st, rows := a.pool.Status()
	info := &observe.AppInfo{
		State: st.State, PID: st.PID, Since: st.Since, Restarts: st.Restarts,
		LastExit: st.LastExit, MaxMemory: int64(cfg.App.MaxMemory),
	}
	if st.State == supervise.StateFailing {
		info.State, info.Stderr = "failing: "+st.Failure, st.Stderr
	}
	for _, r := range rows {
		w := observe.WorkerInfo{
			Index: r.Index, PID: r.PID, State: r.State, Served: r.Served, InFlight: r.InFlight,
			Started: r.Started, LastRecycle: r.LastRecycle, Restarts: r.Restarts,
		}
		if r.PID != 0 && r.Index < len(a.watches) {
			if tree := a.watches[r.Index].Last(); tree.Root == r.PID {
				w.RSS, w.PSS = tree.RSS, tree.PSS
				info.RSS += tree.RSS
				info.PSS += tree.PSS
			}
		}
		info.Workers = append(info.Workers, w)
	}
	return info
}
