package observe

import "time"

// Snapshot is what the composition root reports about Bulwark, the app and
// the machine at one instant. Options.Snapshot builds one every second (and
// on every /status request), so it must be cheap: atomics and cached
// samples, no walking of /proc on the caller's goroutine.
type Snapshot struct {
	// Bulwark is Bulwark's own process.
	Bulwark ProcInfo `json:"bulwark"`
	// GoHeapBytes is the Go heap in use; MemoryLimitBytes is the Go memory
	// limit (0 when none is set).
	GoHeapBytes      int64 `json:"go_heap_bytes"`
	MemoryLimitBytes int64 `json:"memory_limit_bytes"`
	// App is the supervised app; nil when no app is supervised.
	App *AppInfo `json:"app"`
	// Machine is the machine's (or the cgroup's) memory.
	Machine MachineInfo `json:"machine"`
	// Certs are the names [acme] manages; absent without it.
	Certs []CertStatus `json:"certs,omitempty"`
	// ConnsH1 and ConnsH2 count open client connections by protocol;
	// ConnsActive and ConnsIdle count them by state.
	ConnsH1     int64 `json:"conns_h1"`
	ConnsH2     int64 `json:"conns_h2"`
	ConnsActive int64 `json:"conns_active"`
	ConnsIdle   int64 `json:"conns_idle"`
	// RequestsTotal counts requests since start; it never decreases.
	// Requests per second are derived from it.
	RequestsTotal uint64 `json:"requests_total"`
	// InFlight is the number of requests at the app, Queued the number
	// waiting for a slot; MaxConcurrency and QueueCap are their limits.
	InFlight       int `json:"in_flight"`
	Queued         int `json:"queued"`
	MaxConcurrency int `json:"max_concurrency"`
	QueueCap       int `json:"queue_cap"`
	// LatencyP50 and LatencyP99 are request latencies over the last second;
	// zero when there were no requests. In JSON they appear in Status as
	// latency_p50_seconds and latency_p99_seconds.
	LatencyP50 time.Duration `json:"-"`
	LatencyP99 time.Duration `json:"-"`
	// Upstreams are the app's addresses, in the order configured, and
	// whether each takes requests: one that failed to connect is left out
	// for a while when there are several.
	Upstreams []UpstreamInfo `json:"upstreams"`
	// DBPoolPerProcess is DB_POOL_SIZE + DB_MAX_OVERFLOW of the app's
	// environment: the most database connections one app process's pool
	// may open; 0 when unknown. The database probe's AppBudget is it times
	// the app's worker processes.
	DBPoolPerProcess int `json:"-"`
}

// UpstreamInfo is one address of the app.
type UpstreamInfo struct {
	Address string `json:"address"`
	Up      bool   `json:"up"`
}

// ProcInfo describes one process.
type ProcInfo struct {
	PID       int       `json:"pid"`
	RSS       int64     `json:"rss_bytes"`
	PSS       int64     `json:"pss_bytes"` // 0 when unknown
	StartTime time.Time `json:"start_time"`
	Cmdline   string    `json:"cmdline"`
}

// AppInfo describes the supervised app.
type AppInfo struct {
	// State is the supervisor's state, such as "starting", "ready",
	// "restarting", "stopped", or "failing: <reason>" when the app cannot
	// start.
	State string `json:"state"`
	// PID is the main process's PID; 0 when it is not running.
	PID int `json:"pid"`
	// Since is when the app entered State.
	Since time.Time `json:"since"`
	// Restarts counts restarts by reason: crash, exit (a ready app that
	// exited 0 by itself), memory, manual, reload.
	Restarts map[string]int `json:"restarts"`
	// LastExit describes how the previous process ended ("" if none did).
	LastExit string `json:"last_exit"`
	// Stderr holds the last stderr lines of a start that failed, while
	// State is "failing: <reason>".
	Stderr []string `json:"stderr,omitempty"`
	// MaxMemory is the restart threshold for the whole tree; 0 means none.
	MaxMemory int64 `json:"max_memory_bytes"`
	// Procs lists the app's process tree, main process first.
	Procs []ProcInfo `json:"procs"`
	// RSS and PSS are summed over the whole tree.
	RSS int64 `json:"rss_bytes"`
	PSS int64 `json:"pss_bytes"`
	// Workers has one row per worker when the app runs as a pool
	// ([app] workers); empty for the single app.
	Workers []WorkerInfo `json:"workers,omitempty"`
}

// WorkerInfo is one worker of an app pool.
type WorkerInfo struct {
	// Index is the worker's number, its BULWARK_WORKER.
	Index int `json:"index"`
	// PID is its process's PID; 0 when none runs.
	PID int `json:"pid"`
	// State is its supervisor's state, as AppInfo.State.
	State string `json:"state"`
	// RSS and PSS are its process tree's memory.
	RSS int64 `json:"rss_bytes"`
	PSS int64 `json:"pss_bytes"`
	// Served counts the requests sent to its current process.
	Served int64 `json:"requests_served"`
	// InFlight counts its requests in flight.
	InFlight int `json:"in_flight"`
	// Started is when its current process started.
	Started time.Time `json:"started"`
	// LastRecycle is why it was last recycled ("memory", "max_requests",
	// "max_lifetime", "request_timeout", "manual", "reload"); "" before.
	LastRecycle string `json:"last_recycle,omitempty"`
	// Restarts counts its restarts by reason.
	Restarts map[string]int `json:"restarts"`
}

// MachineInfo is the memory of the machine, or of the cgroup Bulwark runs in
// when that is smaller.
type MachineInfo struct {
	MemTotal     int64 `json:"mem_total_bytes"`
	MemAvailable int64 `json:"mem_available_bytes"`
}

// CertStatus is one name whose certificate ACME obtains and renews. Times
// are absent (zero) when they have not happened.
type CertStatus struct {
	Name string `json:"name"`
	// NotAfter is when the certificate served expires.
	NotAfter time.Time `json:"not_after,omitzero"`
	// RenewAfter is when renewal is due by the renewal window.
	RenewAfter time.Time `json:"renew_after,omitzero"`
	// LastAttempt is when this process last started an order for it;
	// NextAttempt is when the next is due (the retry backoff after a
	// failure, else RenewAfter).
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LastRenewal is when this process last obtained or renewed it.
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	// LastError is the last failure ("" after a success), at LastErrorAt;
	// the old certificate keeps being served and the order is retried.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Event is something worth a marker on the dashboard's charts.
type Event struct {
	At time.Time `json:"at"`
	// Kind is what happened; "restart" for an app restart.
	Kind string `json:"kind"`
	// Reason is why: crash, exit, memory, manual or reload for a restart.
	Reason string `json:"reason"`
	// Detail is a short human-readable note, such as the exit status.
	Detail string `json:"detail,omitempty"`
}

// DBStatus is the latest database probe.
type DBStatus struct {
	// Kind is "mysql" or "postgres".
	Kind string `json:"kind"`
	// Connections is the number of client connections on the server at the
	// last successful probe, the probe's own left out; -1 before the first.
	// Without the right to see other users' connections (MySQL's PROCESS,
	// PostgreSQL's pg_read_all_stats for their state) only what the probe's
	// user may see is counted.
	Connections int64 `json:"connections"`
	// Groups counts the connections by user and state (MySQL: idle for
	// Sleep, active for Query, else the command; PostgreSQL: pg_stat_activity
	// state), most first; at most MaxDBGroups.
	Groups []DBGroup `json:"groups,omitempty"`
	// LongestQuerySeconds is how long the longest-running query has run; 0
	// when none runs.
	LongestQuerySeconds float64 `json:"longest_query_seconds"`
	// User is the user the probe connects as: normally the app's, whose
	// connections AppConnections counts (the probe's left out).
	User           string `json:"user,omitempty"`
	AppConnections int64  `json:"app_connections"`
	// AppProcesses are the app's worker processes, and AppBudget the most
	// connections their pools may open: (DB_POOL_SIZE + DB_MAX_OVERFLOW)
	// times AppProcesses; 0 when unknown.
	AppProcesses int   `json:"app_processes,omitempty"`
	AppBudget    int64 `json:"app_budget,omitempty"`
	// At is when the last probe ran; Error is its error ("" on success).
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// DBGroup is the number of connections of one user in one state.
type DBGroup struct {
	User  string `json:"user"`
	State string `json:"state"`
	Count int64  `json:"count"`
}

// MaxDBGroups bounds DBStatus.Groups.
const MaxDBGroups = 20

// Status is the document served at /status.
type Status struct {
	// Time is when the document was made, by Bulwark's clock; uptimes are
	// Time minus a start_time.
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	Snapshot
	// RequestsPerSecond is derived from RequestsTotal over the last sample
	// interval (about a second); 0 before the second sample.
	RequestsPerSecond float64 `json:"requests_per_second"`
	LatencyP50Seconds float64 `json:"latency_p50_seconds"`
	LatencyP99Seconds float64 `json:"latency_p99_seconds"`
	// DB is the database probe; absent when none is configured.
	DB *DBStatus `json:"db,omitempty"`
	// Events are the most recent events, oldest first.
	Events []Event `json:"events"`
	// History is present with ?history=1 and at /api/history.
	History *History `json:"history,omitempty"`
}

// History is the ring buffer of samples, one a second, oldest first, in
// columns: every slice has len(T) entries.
type History struct {
	// IntervalSeconds is the sampling interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Full is true when the columns hold every sample kept, and false when
	// they hold only the samples after the since the request gave
	// (/api/history?since=T); Oldest lets such a caller drop what the
	// server no longer keeps.
	Full bool `json:"full"`
	// Oldest is the time of the oldest sample kept, in Unix milliseconds
	// (0 when there is none yet).
	Oldest int64 `json:"oldest"`
	// T is each sample's time in Unix milliseconds.
	T                []int64   `json:"t"`
	BulwarkRSS       []int64   `json:"bulwark_rss"`
	GoHeap           []int64   `json:"go_heap"`
	AppRSS           []int64   `json:"app_rss"`
	AppPSS           []int64   `json:"app_pss"`
	MachineAvailable []int64   `json:"machine_available"`
	RequestsPerSec   []float64 `json:"rps"`
	P50Ms            []float64 `json:"p50_ms"`
	P99Ms            []float64 `json:"p99_ms"`
	ConnsH1          []int64   `json:"conns_h1"`
	ConnsH2          []int64   `json:"conns_h2"`
	ConnsActive      []int64   `json:"conns_active"`
	ConnsIdle        []int64   `json:"conns_idle"`
	InFlight         []int     `json:"in_flight"`
	Queued           []int     `json:"queued"`
}
