package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// States reported in Status.State.
const (
	StateStarting   = "starting"   // first start, waiting for readiness
	StateReady      = "ready"      // serving
	StateRestarting = "restarting" // graceful restart in progress
	StateBackoff    = "backoff"    // crashed; waiting before the next start
	StateFailing    = "failing"    // the last start failed; Status.Failure says why
	StateStopped    = "stopped"    // not running (before Run, after it)
)

// Restart reasons, the label values of bulwark_app_restarts_total.
const (
	ReasonCrash  = "crash"
	ReasonMemory = "memory"
	ReasonManual = "manual"
	ReasonReload = "reload"
	// ReasonExit is an app that was ready and exited 0 by itself
	// (uvicorn's --limit-max-requests): started again, but no crash.
	ReasonExit = "exit"
)

// ErrNotRunning is returned by Restart when Run is not running.
var ErrNotRunning = errors.New("app supervisor not running")

// Status is a snapshot of the supervised app.
type Status struct {
	// PID is the app's process ID; 0 when none runs.
	PID int
	// State is one of the State* constants.
	State string
	// Since is when State was entered.
	Since time.Time
	// Restarts counts restarts by reason (crash, memory, manual, reload).
	Restarts map[string]int
	// LastExit says how the last app process ended ("exit code 1",
	// "killed by signal SIGKILL"); "" before any exit.
	LastExit string
	// Address is where the current app listens.
	Address string
	// Failure is why the last start failed, in one line, while State is
	// StateFailing; "" otherwise.
	Failure string
	// Stderr holds the last lines the failed start wrote to stderr, while
	// State is StateFailing.
	Stderr []string
}

// StartError is returned when a new app instance did not become ready. Its
// message is the reason followed by the app's last stderr lines, so that
// whoever asked for the restart sees why without reading the log.
type StartError struct {
	// Reason says why, in one line.
	Reason string
	// Stderr holds the instance's last stderr lines, oldest first.
	Stderr []string
	// Err is the cause when the command could not be started at all.
	Err error
}

func (e *StartError) Unwrap() error { return e.Err }

func (e *StartError) Error() string {
	if len(e.Stderr) == 0 {
		return e.Reason
	}
	return e.Reason + "\nthe app's last stderr lines:\n" + strings.Join(e.Stderr, "\n")
}

type applyReq struct {
	opts  Options
	reply chan error // cap 1
}

type restartReq struct {
	reason string
	hard   bool       // stop the old copy first, with hardStopGrace
	reply  chan error // cap 1
}

// hardStopGrace is how long a copy stopped by RestartHard or Urgent has to
// finish its requests after SIGTERM before SIGKILL: it is over its memory
// ceiling and still growing.
const hardStopGrace = time.Second

// Supervisor runs the app. Run owns all process state; the other methods
// are safe for concurrent use and talk to Run through channels.
type Supervisor struct {
	log       *slog.Logger
	gate      *gate
	restartc  chan restartReq
	updatec   chan struct{} // cap 1; the new options are in pending
	applyc    chan applyReq
	done      chan struct{} // closed when Run returns
	running   atomic.Bool
	restarts  map[string]*metrics.Counter
	up        *metrics.Gauge
	uptime    *metrics.Gauge
	lastDur   *metrics.Gauge
	forkc     chan forkReq
	urgentc   chan struct{} // cap 1; see Urgent
	cgroupOff bool          // Run-owned: cgroups failed once, not tried again

	// Owned by the Run goroutine.
	opts    Options
	cur     *instance
	readyAt time.Time
	backoff time.Duration
	crashes int // consecutive failed starts and crashes
	retry   *time.Timer
	addr    string // the address last given to OnAddress

	mu      sync.Mutex
	status  Status  // guarded by mu
	pending Options // guarded by mu
}

// New checks o and returns a Supervisor; Run starts the app.
func New(o Options) (*Supervisor, error) {
	if len(o.Command) == 0 || o.Command[0] == "" {
		return nil, errors.New("app command is empty")
	}
	o = o.withDefaults()
	if o.placeholder() == "" && o.Upstream == "" {
		return nil, errors.New("app upstream address is required when the command has no {port} or {socket}")
	}
	set := o.Metrics
	s := &Supervisor{
		log:      o.Logger,
		opts:     o,
		gate:     newGate(set, o.RestartHold),
		restartc: make(chan restartReq),
		updatec:  make(chan struct{}, 1),
		applyc:   make(chan applyReq),
		done:     make(chan struct{}),
		restarts: make(map[string]*metrics.Counter),
		up:       set.GetOrCreateGauge(metricName("bulwark_app_up", o.worker, ""), nil),
		uptime:   set.GetOrCreateGauge(metricName("bulwark_app_uptime_seconds", o.worker, ""), nil),
		lastDur:  set.GetOrCreateGauge(metricName("bulwark_app_last_restart_duration_seconds", o.worker, ""), nil),
		forkc:    make(chan forkReq),
		urgentc:  make(chan struct{}, 1),
		backoff:  o.BackoffMin,
		status:   Status{State: StateStopped, Since: time.Now(), Restarts: map[string]int{}},
	}
	// A pool's worker is also recycled for its own reasons: counted under
	// them, not as manual restarts nobody asked for.
	for _, r := range []string{ReasonCrash, ReasonExit, ReasonMemory, ReasonManual, ReasonReload, ReasonMaxRequests, ReasonMaxLifetime, ReasonRequestTimeout} {
		s.restarts[r] = set.GetOrCreateCounter(metricName("bulwark_app_restarts_total", o.worker, r))
	}
	return s, nil
}

// metricName is a series name with the worker and reason labels that are
// not "".
func metricName(base, worker, reason string) string {
	var labels []string
	if reason != "" {
		labels = append(labels, `reason="`+reason+`"`)
	}
	if worker != "" {
		labels = append(labels, `worker="`+worker+`"`)
	}
	if len(labels) == 0 {
		return base
	}
	return base + "{" + strings.Join(labels, ",") + "}"
}

// Status returns a snapshot of the app's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Restarts = maps.Clone(s.status.Restarts)
	return st
}

// setState records a state change for Status and the metrics.
func (s *Supervisor) setState(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A zero-downtime swap goes from ready to ready: Since must still be
	// the new process's, or status shows the old one's age as the uptime.
	if s.status.State != state || state == StateReady && s.cur != nil && s.cur.pid != s.status.PID {
		s.status.State, s.status.Since = state, time.Now()
	}
	if state != StateFailing {
		s.status.Failure, s.status.Stderr = "", nil
	}
	s.status.PID, s.status.Address = 0, ""
	if s.cur != nil {
		s.status.PID, s.status.Address = s.cur.pid, s.cur.addr
	}
	if state == StateReady {
		s.up.Set(1)
	} else {
		s.up.Set(0)
		s.uptime.Set(0)
	}
}

func (s *Supervisor) countRestart(reason string) {
	c, ok := s.restarts[reason]
	if !ok {
		reason, c = ReasonManual, s.restarts[ReasonManual]
	}
	c.Inc()
	s.mu.Lock()
	s.status.Restarts[reason]++
	s.mu.Unlock()
}

// Restart restarts the app gracefully for reason ("memory", "manual",
// "reload"; others count as "manual") and returns once the new app is
// ready, or with the error that prevented it (a *StartError in its chain
// when the new app did not become ready). It blocks for up to
// StopTimeout×2 + StartTimeout, so callers on a loop (memwatch's OnExceed)
// call it from a goroutine. A restart asked for while one runs follows it.
// It resets the crash back-off: a fixed app starts at once. Only a restart
// that succeeded is counted under reason.
func (s *Supervisor) Restart(reason string) error {
	return s.restartReq(restartReq{reason: reason, reply: make(chan error, 1)})
}

// RestartHard is Restart for an app over its hard memory ceiling: the
// current copy is stopped first (SIGTERM at once, SIGKILL after a second)
// and requests wait at the gate for the new one, even when a second copy
// would fit, because the old one is still growing.
func (s *Supervisor) RestartHard(reason string) error {
	return s.restartReq(restartReq{reason: reason, hard: true, reply: make(chan error, 1)})
}

// Urgent tells a restart in progress that the old copy has crossed its
// hard ceiling: a zero-downtime restart stops the old copy now and holds
// requests until the new one is ready. It does not block, and does nothing
// when no restart is in progress.
func (s *Supervisor) Urgent() {
	select {
	case s.urgentc <- struct{}{}:
	default:
	}
}

func (s *Supervisor) restartReq(req restartReq) error {
	if !s.running.Load() {
		return ErrNotRunning
	}
	select {
	case s.restartc <- req:
	case <-s.done:
		return ErrNotRunning
	}
	select {
	case err := <-req.reply:
		return err
	case <-s.done:
		return ErrNotRunning
	}
}

// Update applies new options (on reload). A changed command, directory,
// environment, upstream, health path or memory limit restarts the app
// gracefully with reason "reload"; other changes (timeouts, back-off,
// hold) apply from now on. Metrics and Logger are kept from New. It does
// not block; Run picks up the latest options.
func (s *Supervisor) Update(o Options) {
	s.mu.Lock()
	s.pending = o
	s.mu.Unlock()
	select {
	case s.updatec <- struct{}{}:
	default:
	}
}

// UpdateWait is Update that waits until the options are applied: when they
// restart the app, until the new app is ready or has failed to become
// ready. With "{port}" or "{socket}" the old app keeps serving when the new
// one fails. Before Run starts (or after it ended) it is Update.
func (s *Supervisor) UpdateWait(o Options) error {
	if !s.running.Load() {
		s.Update(o)
		return nil
	}
	req := applyReq{opts: o, reply: make(chan error, 1)}
	select {
	case s.applyc <- req:
	case <-s.done:
		s.Update(o)
		return nil
	}
	select {
	case err := <-req.reply:
		return err
	case <-s.done:
		return ErrNotRunning
	}
}

// Run starts the app and keeps it running until ctx ends: it waits for
// readiness, restarts the app after a crash with exponential back-off, and
// performs the restarts asked for by Restart and Update. When ctx ends it
// drains the requests in flight (up to StopTimeout), stops the app
// (SIGTERM to its process group, SIGKILL after StopTimeout) and returns
// nil. It returns an error only when the first start fails outright (the
// command cannot be executed). Run must be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("supervisor Run called twice")
	}
	stopFork := make(chan struct{})
	go forker(s.forkc, stopFork) // exits when Run returns, after the app is gone
	defer func() {
		s.shutdown()
		close(stopFork)
		close(s.done)
	}()

	if err := s.bringUp(ctx, StateStarting); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if s.cur == nil && errors.Is(err, errStart) {
			return err
		}
		s.scheduleRetry(err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		var exited <-chan struct{}
		if s.cur != nil {
			exited = s.cur.done
		}
		var retry <-chan time.Time
		if s.retry != nil {
			retry = s.retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-exited:
			s.crashed()
		case <-retry:
			s.retry = nil
			state := StateStarting
			if s.Status().State == StateFailing {
				state = StateFailing // until a start succeeds
			}
			if err := s.bringUp(ctx, state); err != nil && ctx.Err() == nil {
				s.scheduleRetry(err)
			}
		case req := <-s.restartc:
			req.reply <- s.restart(ctx, req.reason, req.hard)
		case <-s.updatec:
			s.mu.Lock()
			o := s.pending
			s.mu.Unlock()
			if err := s.applyUpdate(ctx, o); err != nil {
				s.log.Error("reload restart failed", "err", err)
			}
		case req := <-s.applyc:
			req.reply <- s.applyUpdate(ctx, req.opts)
		case <-tick.C:
			if s.cur != nil && !s.readyAt.IsZero() {
				s.uptime.Set(time.Since(s.readyAt).Seconds())
			}
		}
	}
}

// errStart marks a failure to execute the command at all.
var errStart = errors.New("cannot start the app")

// bringUp starts a new instance as the current one, waits until it is
// ready, announces its address and opens the gate. On failure no instance
// is current (unless ctx ended: shutdown stops it) and the error holds a
// *StartError.
func (s *Supervisor) bringUp(ctx context.Context, state string) error {
	o := s.opts
	s.setState(state)
	inst, err := s.start(o)
	if err != nil {
		s.log.Error("cannot start the app", "command", o.Command, "err", err)
		return fmt.Errorf("%w: %w", errStart, &StartError{Reason: err.Error(), Err: err})
	}
	s.cur = inst
	s.setState(state)
	s.log.Info("app started", "pid", inst.pid, "address", inst.addr)
	if o.OnStart != nil {
		o.OnStart(inst.pid)
	}
	if err := s.awaitReady(ctx, o, inst, nil); err != nil {
		if ctx.Err() != nil {
			return err
		}
		s.cur = nil
		s.stop(inst, o.StopTimeout)
		s.report(inst, slog.LevelError, err.Error())
		return &StartError{Reason: err.Error(), Stderr: inst.stderr.lines()}
	}
	s.ready(inst)
	return nil
}

// ready makes inst the serving instance: address, gate, state.
func (s *Supervisor) ready(inst *instance) {
	s.gate.setAddr(inst.addr)
	if inst.addr != s.addr {
		s.addr = inst.addr
		if s.opts.OnAddress != nil {
			s.opts.OnAddress(inst.addr)
		}
	}
	s.cur, s.readyAt = inst, time.Now()
	s.setState(StateReady)
	s.gate.set(gateOpen)
	s.log.Info("app ready", "pid", inst.pid, "address", inst.addr,
		"start_seconds", time.Since(inst.started).Seconds())
}

// crashed handles the unexpected exit of the current instance.
func (s *Supervisor) crashed() {
	inst := s.cur
	s.cur = nil
	s.gate.set(gateClosed)
	s.cleanup(inst)
	if !s.readyAt.IsZero() && (time.Since(s.readyAt) >= s.opts.BackoffReset || inst.exit == nil) {
		// A ready app that exits 0 meant to (uvicorn --limit-max-requests,
		// a worker's own recycling): no failure to back off from.
		s.backoff, s.crashes = s.opts.BackoffMin, 0
	}
	if inst.exit == nil {
		s.report(inst, slog.LevelInfo, "app exited by itself")
		s.scheduleRetry(errCleanExit)
		return
	}
	s.report(inst, slog.LevelError, "app exited")
	s.scheduleRetry(errors.New(describeExit(inst.exit)))
}

// errCleanExit is the cause of a restart after the app exited 0.
var errCleanExit = errors.New("the app exited by itself with code 0")

// report logs how inst ended at level and keeps it as the last exit. A
// failure (an error) carries the last lines of the app's stderr.
func (s *Supervisor) report(inst *instance, level slog.Level, msg string) {
	exit := describeExit(inst.exit)
	s.mu.Lock()
	s.status.LastExit = exit
	s.mu.Unlock()
	attrs := []any{"pid", inst.pid, "exit", exit, "uptime", time.Since(inst.started).Round(time.Millisecond)}
	if inst.ooms > 0 {
		attrs = append(attrs, "cgroup_oom_kills", inst.ooms)
	}
	if level >= slog.LevelError {
		attrs = append(attrs, "stderr", strings.Join(inst.stderr.lines(), "\n"))
	}
	s.log.Log(context.Background(), level, msg, attrs...)
}

// scheduleRetry arms the back-off timer after a crash or failed start. After
// a failed start (a *StartError) the app is failing: the gate answers 503
// at once instead of holding requests for an app that may never come.
func (s *Supervisor) scheduleRetry(cause error) {
	d := s.backoff
	s.backoff = min(2*s.backoff, s.opts.BackoffMax)
	s.crashes++
	if errors.Is(cause, errCleanExit) {
		s.countRestart(ReasonExit)
	} else {
		s.countRestart(ReasonCrash)
	}
	s.readyAt = time.Time{}
	var se *StartError
	if errors.As(cause, &se) {
		s.gate.set(gateFailing)
		reason, _, _ := strings.Cut(se.Reason, "\n")
		s.setState(StateFailing)
		s.mu.Lock()
		s.status.Failure, s.status.Stderr = reason, se.Stderr
		s.mu.Unlock()
		s.log.Error("the app is failing to start; clients get 503 until it starts",
			"reason", reason, "backoff", d, "failures", s.crashes)
		s.armRetry(d)
		return
	}
	s.gate.set(gateClosed)
	s.setState(StateBackoff)
	switch {
	case errors.Is(cause, errCleanExit):
		s.log.Info("starting the app again: it exited by itself with code 0", "backoff", d)
	case s.crashes >= 3:
		s.log.Error(fmt.Sprintf("app is crash-looping: %d failures in a row; next start in %v", s.crashes, d),
			"backoff", d, "failures", s.crashes, "last", cause)
	default:
		s.log.Warn("restarting app after a crash", "backoff", d, "failures", s.crashes, "last", cause)
	}
	s.armRetry(d)
}

func (s *Supervisor) armRetry(d time.Duration) {
	if s.retry != nil {
		s.retry.Stop()
	}
	s.retry = time.NewTimer(d)
}
