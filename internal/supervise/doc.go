// Package supervise runs the application as Bulwark's child and keeps it
// serving: it starts the app in its own process group, waits until its
// health URL answers, restarts it with exponential back-off when it crashes,
// and restarts it gracefully on request (memory, manual, reload) without
// failing a request.
//
// The hold gate (Supervisor.Gate) sits in the request chain just in front of
// the proxy. While the app is not ready, requests wait there for up to
// Options.RestartHold and are answered 503 "app_unavailable" with
// Retry-After only when that runs out; they never get an instant 502
// because the app is restarting. A graceful restart closes the gate, drains
// the requests in flight through it, stops the app (SIGTERM to the process
// group, SIGKILL after Options.StopTimeout), starts the new one and opens
// the gate when it is ready. When the command contains "{port}" or
// "{socket}" and Options.ZeroDowntime allows it, the new instance starts
// first on a fresh address, traffic switches with Options.OnAddress, and the
// old one is drained and stopped: no hold at all.
//
// Before it starts an app on a fixed address, the supervisor checks that
// nothing listens there and refuses, naming the PID and command that hold
// it (found through /proc/net and /proc/PID/fd). A health answer counts
// only when the listening socket belongs to the app's own process tree, so
// a leftover process is never taken for the app. A start that fails leaves
// the app "failing": Status says why with its last stderr lines, the gate
// answers 503 at once, and Restart or UpdateWait return a *StartError
// carrying those lines.
//
// Memory restarts come in two kinds: Restart (next to the old copy when
// Options.ZeroDowntime says a second one fits, else old copy first) and
// RestartHard for an app above its hard ceiling (old copy first, a second
// of grace). Urgent turns a zero-downtime restart in progress into the
// latter when the old copy crosses the ceiling meanwhile.
//
// The app never outlives Bulwark: it is started with a parent-death signal
// (SIGKILL) from a dedicated OS thread, and Run stops it when its context
// ends. Memory measurement is left to the caller (package memwatch), which
// asks for Restart("memory"); this package only applies the cgroup v2
// memory.high/memory.max where the machine allows it.
package supervise
