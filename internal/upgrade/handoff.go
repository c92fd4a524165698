package upgrade

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// How a failed upgrade says why, at once, instead of leaving `bulwark
// upgrade` waiting for a PID file that never changes:
//
//   - The old process starts the new one with a pipe as its stderr and
//     copies what comes through it to the real stderr, keeping the last
//     lines. The real stderr is passed along as an inherited file; the new
//     process puts it back on fd 2 in Ready, before the old one learns it
//     is ready and goes away. A new process that dies before that (a bad
//     config, a port it cannot bind) has written its reason into the pipe.
//   - The old process writes the outcome to statusSuffix next to the PID
//     file, where Trigger reads it.
//
// A binary without stderrFile in it (one from before this handoff) would
// never put the real stderr back and would die of SIGPIPE once the old
// process exits, so it gets the real stderr directly.

// stderrFile names the real stderr among the inherited files. The name is
// also the marker looked for in the new binary.
const stderrFile = "bulwark-stderr-handoff-v1"

// statusSuffix is added to the PID file's name for the upgrade status file.
const statusSuffix = ".upgrade"

// stderrKeep is how many of the new process's last stderr lines a failed
// upgrade reports.
const stderrKeep = 20

// tail copies a stream to w and keeps its last lines.
type tail struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed at EOF
}

func startTail(r io.ReadCloser, w io.Writer) *tail {
	t := &tail{done: make(chan struct{})}
	go func() { // exits at EOF: every copy of the pipe's write end closed
		defer close(t.done)
		defer r.Close()
		br := bufio.NewReader(r)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(w, line)
				t.add(strings.TrimRight(line, "\r\n"))
			}
			if err != nil {
				return
			}
		}
	}()
	return t
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == stderrKeep {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

// last waits up to wait for EOF and returns the lines kept.
func (t *tail) last(wait time.Duration) []string {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}

// knowsHandoff reports whether the binary at path puts the real stderr
// back (it contains stderrFile).
func knowsHandoff(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	marker := []byte(stderrFile)
	buf := make([]byte, 1<<20)
	keep := 0
	for {
		n, err := f.Read(buf[keep:])
		chunk := buf[:keep+n]
		if bytes.Contains(chunk, marker) {
			return true
		}
		if err != nil {
			return false
		}
		// Keep the end of the chunk: the marker may straddle two reads.
		keep = min(len(marker)-1, len(chunk))
		copy(buf, chunk[len(chunk)-keep:])
	}
}

// restoreStderr puts the real stderr the old process passed back on fd 2.
func restoreStderr(real *os.File) error {
	if err := syscall.Dup3(int(real.Fd()), 2, 0); err != nil {
		return fmt.Errorf("restoring stderr after the upgrade: %w", err)
	}
	return nil
}

// writeStatus records the outcome of an upgrade started by pid for Trigger:
// "ok PID UNIXNANO" or "failed PID UNIXNANO" and the reason on the lines
// after.
func writeStatus(pidFile string, pid int, err error) error {
	if pidFile == "" {
		return nil
	}
	s := fmt.Sprintf("ok %d %d\n", pid, time.Now().UnixNano())
	if err != nil {
		s = fmt.Sprintf("failed %d %d\n%s\n", pid, time.Now().UnixNano(), strings.TrimPrefix(err.Error(), "upgrade: "))
	}
	return writeFileAtomic(pidFile+statusSuffix, s)
}

// readStatus returns the failure recorded for an upgrade of pid at or
// after since; nil when there is none (yet).
func readStatus(pidFile string, pid int, since time.Time) error {
	b, err := os.ReadFile(pidFile + statusSuffix)
	if err != nil {
		return nil
	}
	head, reason, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(head)
	if len(f) != 3 || f[0] != "failed" || f[1] != strconv.Itoa(pid) {
		return nil
	}
	if ns, err := strconv.ParseInt(f[2], 10, 64); err != nil || ns < since.UnixNano() {
		return nil // an earlier upgrade's
	}
	return errors.New(strings.TrimSpace(reason))
}
