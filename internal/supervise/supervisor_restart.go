package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// restart performs one graceful restart: zero-downtime when the command has
// a placeholder and a second instance fits, hold-and-restart otherwise.
func (s *Supervisor) restart(ctx context.Context, reason string, hard bool) error {
	t0 := time.Now()
	select { // an Urgent from before this restart is stale
	case <-s.urgentc:
	default:
	}
	defer func() { s.lastDur.Set(time.Since(t0).Seconds()) }()
	if s.retry != nil { // in back-off: start now
		s.retry.Stop()
		s.retry = nil
	}
	// Someone asked for this start (after fixing the app, often): the
	// back-off of earlier crashes no longer applies.
	s.backoff, s.crashes = s.opts.BackoffMin, 0
	mode := "hold"
	if hard {
		mode = "hold (memory above its hard ceiling)"
	} else if s.cur != nil && s.opts.placeholder() != "" {
		if s.opts.ZeroDowntime != nil && s.opts.ZeroDowntime() {
			mode = "zero-downtime"
		} else {
			mode = "hold (a second instance does not fit in memory)"
		}
	}
	s.log.Info("restarting app", "reason", reason, "mode", mode)
	var err error
	if mode == "zero-downtime" {
		err = s.swap(ctx)
	} else {
		grace := s.opts.StopTimeout
		if hard {
			grace = hardStopGrace
		}
		err = s.holdRestart(ctx, grace, hard)
	}
	if err != nil {
		if ctx.Err() == nil && s.cur == nil {
			s.scheduleRetry(err)
		}
		return fmt.Errorf("restarting app (%s): %w", reason, err)
	}
	s.countRestart(reason)
	s.log.Info("app restarted", "reason", reason, "mode", mode, "pid", s.cur.pid,
		"seconds", time.Since(t0).Seconds())
	return nil
}

// holdRestart closes the gate, drains (unless hard: the app finishes its
// requests after SIGTERM), stops the current instance with grace, starts a
// new one and opens the gate when it is ready.
func (s *Supervisor) holdRestart(ctx context.Context, grace time.Duration, hard bool) error {
	s.gate.set(gateClosed) // a failing app's requests wait for this attempt too
	if old := s.cur; old != nil {
		s.setState(StateRestarting)
		if !hard && !s.gate.drain(ctx, s.gate.current(), grace) {
			s.log.Warn("requests still in flight after stop_timeout: stopping the app anyway",
				"in_flight", s.InFlight())
		}
		s.cur = nil
		s.stop(old, grace)
		s.mu.Lock()
		s.status.LastExit = describeExit(old.exit)
		s.mu.Unlock()
	}
	return s.bringUp(ctx, StateRestarting)
}

// swap starts a new instance next to the current one, switches traffic to
// it once ready, then drains and stops the old one. The gate stays open.
func (s *Supervisor) swap(ctx context.Context) error {
	o, old := s.opts, s.cur
	inst, err := s.start(o)
	if err != nil {
		return err
	}
	s.log.Info("app started next to the running one", "pid", inst.pid, "address", inst.addr, "old_pid", old.pid)
	oldStopped := false
	urgent := func() {
		s.log.Warn("app memory above its hard ceiling during the restart: stopping the old copy now; requests wait for the new one",
			"pid", old.pid, "new_pid", inst.pid)
		s.gate.set(gateClosed)
		s.setState(StateRestarting)
		s.cur = nil
		s.stop(old, hardStopGrace)
		oldStopped = true
	}
	if err := s.awaitReady(ctx, o, inst, urgent); err != nil {
		s.stop(inst, o.StopTimeout)
		if ctx.Err() != nil {
			return err
		}
		if oldStopped { // nothing serves: requests wait at the gate for a retry
			s.report(inst, slog.LevelError, "new app instance failed after the old one was stopped for memory; retrying with backoff")
			return &StartError{Reason: err.Error() + "; the old app was stopped (memory above its hard ceiling)",
				Stderr: inst.stderr.lines()}
		}
		s.report(inst, slog.LevelError, "new app instance failed; the old one keeps serving")
		return &StartError{Reason: err.Error() + "; the old app keeps serving", Stderr: inst.stderr.lines()}
	}
	if o.OnStart != nil {
		o.OnStart(inst.pid)
	}
	s.ready(inst) // OnAddress(new), then the new generation gets the new requests
	if oldStopped {
		return nil
	}
	gen := s.gate.swap()
	if !s.gate.drain(ctx, gen, o.StopTimeout) {
		s.log.Warn("old app still had requests in flight after stop_timeout", "pid", old.pid)
	}
	s.stop(old, o.StopTimeout)
	return nil
}

// applyUpdate takes new options; a different app is restarted, and the
// error says why the new one did not become ready.
func (s *Supervisor) applyUpdate(ctx context.Context, o Options) error {
	if len(o.Command) == 0 {
		return errors.New("ignoring app options without a command")
	}
	o.Metrics, o.Logger, o.env, o.worker = s.opts.Metrics, s.opts.Logger, s.opts.env, s.opts.worker
	o = o.withDefaults()
	if o.placeholder() == "" && o.Upstream == "" {
		return errors.New("ignoring app options without an upstream address")
	}
	prev := s.opts
	changed := !sameApp(prev, o)
	s.opts = o
	s.gate.hold.Store(int64(o.RestartHold))
	if changed && (s.cur != nil || s.retry != nil) {
		err := s.restart(ctx, ReasonReload, false)
		if err != nil && s.cur != nil {
			// The old app keeps serving, and keeps its options: its next
			// restart (a crash, memory, max_requests, restart-app) must
			// start what runs now, not the command that just failed. The
			// next reload tries the new options again.
			s.opts = prev
			s.gate.hold.Store(int64(prev.RestartHold))
		}
		return err
	}
	return nil
}

// shutdown stops the current instance when Run ends: the gate answers at
// once from now on, in-flight requests get up to StopTimeout.
func (s *Supervisor) shutdown() {
	if s.retry != nil {
		s.retry.Stop()
	}
	inst := s.cur
	if inst != nil {
		s.gate.drain(context.Background(), s.gate.current(), s.opts.StopTimeout)
	}
	s.gate.set(gateStopped)
	if inst != nil {
		s.stop(inst, s.opts.StopTimeout)
		s.log.Info("app stopped", "pid", inst.pid, "exit", describeExit(inst.exit))
		s.mu.Lock()
		s.status.LastExit = describeExit(inst.exit)
		s.mu.Unlock()
	}
	s.cur = nil
	s.setState(StateStopped)
}
