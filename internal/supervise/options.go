package supervise

import (
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Defaults for Options fields left zero.
const (
	// DefaultHealth is the readiness path.
	DefaultHealth = "/"
	// DefaultStartTimeout is how long a starting app has to answer its
	// health URL: Python apps with heavy imports take tens of seconds.
	DefaultStartTimeout = 60 * time.Second
	// DefaultStopTimeout is the wait after SIGTERM before SIGKILL, and the
	// longest drain of in-flight requests.
	DefaultStopTimeout = 10 * time.Second
	// DefaultRestartHold is how long the gate holds requests for an app
	// that is not ready.
	DefaultRestartHold = 30 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the wait before
	// restarting a crashed app; it doubles after each crash.
	DefaultBackoffMin = 500 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultBackoffReset is how long the app must stay up for the back-off
	// to start again from BackoffMin.
	DefaultBackoffReset = 60 * time.Second
	// DefaultCgroupRoot is where cgroup v2 is mounted.
	DefaultCgroupRoot = "/sys/fs/cgroup"
)

// pollInterval is the time between readiness probes (the issue asks for
// 100–250 ms: fast enough that a held request barely notices the restart).
const pollInterval = 150 * time.Millisecond

// stderrKeep is how many stderr lines a crash report quotes.
const stderrKeep = 20

// Placeholders in Options.Command that select the zero-downtime variant.
const (
	PortPlaceholder   = "{port}"
	SocketPlaceholder = "{socket}"
)

// Options configures a Supervisor.
type Options struct {
	// Command is the app's argv; required. An argument may contain "{port}"
	// (replaced by a free loopback port for each instance) or "{socket}"
	// (replaced by a fresh unix socket path in a 0700 directory).
	Command []string
	// Dir is the app's working directory. If "", Bulwark's own.
	Dir string
	// Env is added to Bulwark's environment; these values win.
	Env map[string]string
	// Unset names variables of Bulwark's environment the app does not get
	// (Bulwark's own BULWARK_* settings), unless Env sets them.
	Unset []string
	// DefaultEnv is added only for keys absent from both Env and Bulwark's
	// environment (the profile's DB_POOL_SIZE and friends). Nil adds none.
	DefaultEnv map[string]string
	// Upstream is the address the app listens on when Command has no
	// placeholder: "host:port" or "unix:/path". Required in that case.
	Upstream string
	// Health is the path probed for readiness: the app is ready when a GET
	// answers below 500. If "", DefaultHealth.
	Health string
	// StartTimeout is how long a new app has to become ready. If zero,
	// DefaultStartTimeout.
	StartTimeout time.Duration
	// StopTimeout bounds the drain of in-flight requests and the wait after
	// SIGTERM before SIGKILL. If zero, DefaultStopTimeout.
	StopTimeout time.Duration
	// RestartHold is how long the gate holds a request while the app is not
	// ready, before answering 503. If zero, DefaultRestartHold.
	RestartHold time.Duration
	// BackoffMin and BackoffMax bound the wait before restarting after a
	// crash. If zero, DefaultBackoffMin and DefaultBackoffMax.
	BackoffMin, BackoffMax time.Duration
	// BackoffReset is how long the app must stay up for the back-off to
	// start again from BackoffMin. If zero, DefaultBackoffReset.
	BackoffReset time.Duration
	// ZeroDowntime reports whether a second instance fits in memory now; it
	// matters only for a Command with a placeholder. If nil, or when it
	// reports false, restarts hold requests instead.
	ZeroDowntime func() bool
	// OnAddress, if not nil, is called with the app's address
	// ("127.0.0.1:PORT" or "unix:/path") whenever it changes, before the
	// gate opens for it. It is always called once for the first ready app.
	// Like OnStart, it runs on Run's goroutine: it must be quick and must
	// not call Restart.
	OnAddress func(addr string)
	// OnStart, if not nil, is called with the PID of each new app process
	// (for memwatch.Watcher.Watch). In a zero-downtime swap it is called
	// once the new instance is ready, so a failed swap never moves the
	// watch away from the instance still serving.
	OnStart func(pid int)
	// CgroupRoot is where cgroup v2 is mounted. If "", DefaultCgroupRoot.
	CgroupRoot string
	// MaxMemory, when positive, is written as the app's cgroup memory.high,
	// with memory.max 50 % above it. Zero means no cgroup limits.
	MaxMemory int64
	// Logger receives the supervisor's records and the app's output, one
	// record per line with attributes app=true, stream and pid. If nil,
	// nothing is logged.
	Logger *slog.Logger
	// Metrics receives the bulwark_app_* and bulwark_gate_* series. If nil,
	// a private set is used.
	Metrics *metrics.Set

	// env replaces the operating system in tests; zero means the real one.
	env env
	// worker is the index of a pool's worker, as the worker label of its
	// metrics; "" for the app alone.
	worker string
}

// env is the supervisor's view of the operating system (tableflip style).
type env struct {
	// environ returns the environment the app inherits.
	environ func() []string
	// procRoot is where /proc is, for oom_score_adj and our cgroup path.
	procRoot string
}

func (o Options) withDefaults() Options {
	if o.Health == "" {
		o.Health = DefaultHealth
	}
	if !strings.HasPrefix(o.Health, "/") {
		o.Health = "/" + o.Health
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.RestartHold <= 0 {
		o.RestartHold = DefaultRestartHold
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.BackoffReset <= 0 {
		o.BackoffReset = DefaultBackoffReset
	}
	if o.CgroupRoot == "" {
		o.CgroupRoot = DefaultCgroupRoot
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	if o.env.environ == nil {
		o.env.environ = os.Environ
	}
	if o.env.procRoot == "" {
		o.env.procRoot = "/proc"
	}
	return o
}

// placeholder reports which placeholder Command uses, or "".
func (o Options) placeholder() string {
	for _, a := range o.Command {
		switch {
		case strings.Contains(a, PortPlaceholder):
			return PortPlaceholder
		case strings.Contains(a, SocketPlaceholder):
			return SocketPlaceholder
		}
	}
	return ""
}

// sameApp reports whether a and b start the same app, so a reload needs no
// restart.
func sameApp(a, b Options) bool {
	return slices.Equal(a.Command, b.Command) && a.Dir == b.Dir && a.Upstream == b.Upstream &&
		a.Health == b.Health && maps.Equal(a.Env, b.Env) && maps.Equal(a.DefaultEnv, b.DefaultEnv) &&
		slices.Equal(a.Unset, b.Unset) &&
		a.MaxMemory == b.MaxMemory
}

// buildEnv returns base less the names in unset, with env set over it and
// def added for keys absent from both, in a stable order.
func buildEnv(base []string, env, def map[string]string, unset []string) []string {
	out := make([]string, 0, len(base)+len(env)+len(def))
	present := make(map[string]bool, len(base))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, over := env[k]; over || slices.Contains(unset, k) {
			continue
		}
		present[k] = true
		out = append(out, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	for _, k := range slices.Sorted(maps.Keys(def)) {
		if _, set := env[k]; set || present[k] {
			continue
		}
		out = append(out, k+"="+def[k])
	}
	return out
}
