package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudflare/tableflip"

	"bulwark/internal/listen"
)

// DefaultUpgradeTimeout is how long Upgrade waits for the new process to
// become ready when Options.UpgradeTimeout is zero.
const DefaultUpgradeTimeout = tableflip.DefaultUpgradeTimeout

// tableflipEnv is the variable by which tableflip tells a process that it
// was started by an upgrade (unexported in tableflip v1.2.3).
const tableflipEnv = "TABLEFLIP_HAS_PARENT_7DIU3"

// Options configures an Upgrader.
type Options struct {
	// PIDFile is where Ready writes this process's PID, atomically (a
	// temporary file renamed over it), for systemd's PIDFile= and for
	// Trigger. A relative path is taken from the working directory at New.
	// Empty means no PID file.
	PIDFile string
	// UpgradeTimeout bounds how long Upgrade waits for the new process to
	// call Ready before killing it. Zero means DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration
	// Logger receives upgrade events. Nil discards them.
	Logger *slog.Logger
	// Metrics receives bulwark_upgrades_total{result="ok"|"failed"}. Nil
	// means a private set.
	Metrics *metrics.Set
}

func (o Options) withDefaults() Options {
	if o.UpgradeTimeout <= 0 {
		o.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	return o
}

// Upgrader hands this process's listening sockets to a new binary. Its
// methods are safe for concurrent use.
type Upgrader struct {
	opts   Options
	log    *slog.Logger
	tf     *tableflip.Upgrader
	binary string // what Upgrade starts

	readyOnce sync.Once
	readyErr  error

	// realStderr is where stderr really goes (see handoff.go); restore is
	// true in a new process whose fd 2 is the old process's pipe until
	// Ready.
	realStderr *os.File
	restore    bool

	// stateFile carries the handed-over state (state.go); received is
	// what the old process handed this one; state makes what this one
	// hands on, guarded by stateMu.
	stateFile *os.File
	received  []byte
	stateMu   sync.Mutex
	state     func() []byte

	ok, failed *metrics.Counter
}

// New returns the process's Upgrader. In a process started by Upgrade it
// picks up the listeners the old process passed. It may be called once per
// process (a tableflip restriction); a second call returns an error.
func New(o Options) (*Upgrader, error) {
	o = o.withDefaults()
	if o.PIDFile != "" {
		abs, err := filepath.Abs(o.PIDFile)
		if err != nil {
			return nil, fmt.Errorf("pid file %q: %w", o.PIDFile, err)
		}
		o.PIDFile = abs
	}
	binary, err := resolveBinary()
	if err != nil {
		return nil, err
	}
	tf, err := tableflip.New(tableflip.Options{UpgradeTimeout: o.UpgradeTimeout})
	if err != nil {
		return nil, fmt.Errorf("starting the upgrader: %w", err)
	}
	// tableflip has read its marker and sets it again for the next upgrade;
	// the app Bulwark starts must not inherit it.
	os.Unsetenv(tableflipEnv)
	u := &Upgrader{
		opts:   o,
		log:    o.Logger,
		tf:     tf,
		binary: binary,
		ok:     o.Metrics.GetOrCreateCounter(`bulwark_upgrades_total{result="ok"}`),
		failed: o.Metrics.GetOrCreateCounter(`bulwark_upgrades_total{result="failed"}`),
	}
	if tf.HasParent() {
		u.log.Info("started by an upgrade: taking over the listeners of the old process", "pid", os.Getpid())
		if f, err := tf.Fds.File(stderrFile); err == nil && f != nil {
			u.realStderr, u.restore = f, true // passed on to the next upgrade too
		}
	}
	if err := u.openState(); err != nil {
		// Counters start from zero after the next upgrade; nothing else
		// depends on the handover.
		u.log.Warn("upgrades cannot hand over this process's counters", "err", err)
	}
	if u.realStderr == nil {
		u.realStderr = os.Stderr
		if err := tf.Fds.AddFile(stderrFile, os.Stderr); err != nil {
			u.log.Warn("upgrades cannot report the new process's errors", "err", err)
		}
	}
	return u, nil
}

// resolveBinary makes os.Args[0], which tableflip starts on upgrade, an
// absolute path, so that neither a later change of directory nor of PATH
// changes which binary an upgrade runs. The path is not resolved through
// symlinks: pointing a symlink at a new release is a way to upgrade.
//
// This writes os.Args[0] once, before tableflip reads it; nothing else in
// Bulwark reads it afterwards.
func resolveBinary() (string, error) {
	if len(os.Args) == 0 {
		return "", errors.New("resolving the binary for upgrades: no os.Args")
	}
	path, err := exec.LookPath(os.Args[0])
	if err == nil {
		path, err = filepath.Abs(path)
	}
	if err != nil {
		path, err = os.Executable()
		if err != nil {
			return "", fmt.Errorf("resolving the binary for upgrades: %w", err)
		}
	}
	os.Args[0] = path
	return path, nil
}

// Listen returns a listener for (network, addr): the old process's socket
// when it passed one for exactly this pair, otherwise a new one. The pair
// is compared as written ("0.0.0.0:443" and ":443" differ), so keep the
// configured address unchanged across an upgrade. The listen(2) backlog is
// set in both cases (zero means listen.DefaultBacklog). The listener is
// passed on to the next upgrade; closing it is the caller's job.
func (u *Upgrader) Listen(ctx context.Context, network, addr string, backlog int) (net.Listener, error) {
	if backlog <= 0 {
		backlog = listen.DefaultBacklog
	}
	ln, err := u.tf.Listener(network, addr)
	if err != nil {
		return nil, fmt.Errorf("inheriting the listener on %s: %w", addr, err)
	}
	inherited := ln != nil
	if !inherited {
		var bindErr error
		ln, err = u.tf.ListenWithCallback(network, addr, func(network, addr string) (net.Listener, error) {
			var lc net.ListenConfig
			l, err := lc.Listen(ctx, network, addr)
			bindErr = err
			return l, err
		})
		if bindErr != nil {
			err = bindErr // keep the syscall error (EADDRINUSE) unwrappable
		}
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
	}
	if err := listen.SetBacklog(ln, backlog); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	u.log.Debug("listening", "network", network, "addr", ln.Addr().String(), "inherited", inherited)
	return ln, nil
}

// Ready tells the old process, if any, that this one serves: it then stops
// accepting, drains and exits. Call it once every listener is served. Ready
// first writes the PID file, so the file names this process before the old
// one exits; if that fails, the old process is not told and the error is
// returned (the caller should exit, which fails the upgrade and leaves the
// old process serving). Listeners inherited but not asked for are closed.
func (u *Upgrader) Ready() error {
	if u.opts.PIDFile != "" {
		if err := writePIDFile(u.opts.PIDFile, os.Getpid()); err != nil {
			return err
		}
	}
	u.readyOnce.Do(func() {
		if u.restore {
			if err := restoreStderr(u.realStderr); err != nil {
				u.readyErr = err
				return
			}
		}
		if err := u.tf.Ready(); err != nil {
			u.readyErr = fmt.Errorf("telling the old process this one is ready: %w", err)
			return
		}
		if u.tf.HasParent() {
			u.log.Info("ready: the old process now drains and exits", "pid", os.Getpid())
		}
	})
	return u.readyErr
}

// Upgrade starts the binary again with the same arguments and environment,
// passes it the listeners, and waits until it is ready or has failed. On
// success Exit's channel closes and this process should stop accepting,
// drain and exit; on failure it returns the error and this process carries
// on serving. It fails at once while this process is not ready yet, while
// another upgrade runs, while the process that started this one has not
// exited, and after Stop.
func (u *Upgrader) Upgrade() error {
	u.log.Info("upgrade: starting the new binary", "binary", u.binary, "pid", os.Getpid())
	if err := u.writeState(); err != nil {
		u.log.Warn("upgrade: the new process starts without this one's counters", "err", err)
	}
	err := u.upgradeTeed()
	if serr := writeStatus(u.opts.PIDFile, os.Getpid(), err); serr != nil {
		u.log.Warn("upgrade: cannot record the outcome for 'bulwark upgrade'", "err", serr)
	}
	if err != nil {
		u.failed.Inc()
		u.log.Error("upgrade failed: this process keeps serving", "err", err)
		return err
	}
	u.ok.Inc()
	attrs := []any{"pid", os.Getpid()}
	if u.opts.PIDFile != "" {
		if pid, err := ReadPIDFile(u.opts.PIDFile); err == nil {
			attrs = append(attrs, "new_pid", pid)
		}
	}
	u.log.Info("upgrade: the new process is ready; this one stops accepting and drains", attrs...)
	return nil
}

// upgradeTeed runs the upgrade with the new process's stderr passing
// through a pipe (see handoff.go), and adds its last lines to a failure.
// os.Stderr names the pipe while the upgrade runs, which is when tableflip
// hands it to the new process; what this process writes there meanwhile
// reaches the real stderr through the same copy.
func (u *Upgrader) upgradeTeed() error {
	var t *tail
	var w, saved *os.File
	if knowsHandoff(u.binary) {
		r, pw, err := os.Pipe()
		if err == nil {
			t, w, saved = startTail(r, u.realStderr), pw, os.Stderr
			os.Stderr = w
		}
	}
	err := u.tf.Upgrade()
	if w != nil {
		os.Stderr = saved
		w.Close() // the tail sees EOF once the new process has let go too
	}
	if err == nil {
		return nil
	}
	err = fmt.Errorf("upgrade: %w", err)
	if t != nil {
		if lines := t.last(time.Second); len(lines) > 0 {
			err = fmt.Errorf("%w\nthe new process's last stderr lines:\n%s", err, strings.Join(lines, "\n"))
		}
	}
	return err
}

// Exit returns a channel that is closed when this process should stop
// accepting and drain: after a successful Upgrade, or after Stop.
func (u *Upgrader) Exit() <-chan struct{} { return u.tf.Exit() }

// HasParent reports whether this process was started by an upgrade.
func (u *Upgrader) HasParent() bool { return u.tf.HasParent() }

// WaitForParent blocks until the process that started this one has exited,
// or ctx ends. It returns nil at once in a first process. A caller that must
// not run two copies of something at once (an app on a fixed port) starts it
// after WaitForParent returns.
func (u *Upgrader) WaitForParent(ctx context.Context) error {
	if err := u.tf.WaitForParent(ctx); err != nil {
		return fmt.Errorf("waiting for the old process to exit: %w", err)
	}
	return nil
}

// Stop refuses further upgrades, ends one in progress (killing its new
// process), and closes Exit's channel. It is meant for shutdown: if no
// upgrade has succeeded, Unix-socket listeners are unlinked and the PID file
// is removed when it still names this process. Stop may be called more than
// once.
func (u *Upgrader) Stop() {
	u.tf.Stop()
	if u.opts.PIDFile == "" {
		return
	}
	// After an upgrade the file names the new process and is kept.
	if pid, err := ReadPIDFile(u.opts.PIDFile); err == nil && pid == os.Getpid() {
		if err := os.Remove(u.opts.PIDFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			u.log.Warn("removing the pid file failed", "path", u.opts.PIDFile, "err", err)
		}
	}
}
