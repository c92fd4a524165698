package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"

	"bulwark/internal/memwatch"
)

// Proc is a process the benchmark started, in its own process group.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startProc starts argv with env added to the environment, output to logPath.
// The process leads its own process group and is killed if the suite dies.
func startProc(name string, argv, env []string, dir, logPath string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, waits up to grace, then sends
// SIGKILL to the group and to every descendant seen before (a supervised app
// may lead a process group of its own).
func (p *Proc) Stop(grace time.Duration) {
	if p == nil || p.Exited() {
		return
	}
	var pids []int
	if ts, err := memwatch.TreeOf("", p.PID()); err == nil {
		for _, s := range ts.Procs {
			pids = append(pids, s.PID)
		}
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	}
	// Descendants that outlived the root (their own group): by PID, once
	// they are found still running after a short grace.
	deadline := time.Now().Add(grace)
	for _, pid := range pids[min(1, len(pids)):] {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] == 'Z' || b[i+2] == 'X'
		}
	}
	return false
}

// waitReady polls url until it answers 200, the process exits, or limit passes.
func waitReady(ctx context.Context, url string, procs []*Proc, limit time.Duration) error {
	c := newClient(time.Second)
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, p := range procs {
			if p.Exited() {
				return fmt.Errorf("%s exited before it was ready", p.Name)
			}
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s", url, limit)
}

// checkPortFree fails when something already listens on addr.
func checkPortFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s is in use by another program: stop it or choose other ports (--port, --upstream-port)", addr)
		}
		return fmt.Errorf("checking %s: %w", addr, err)
	}
	return ln.Close()
}
