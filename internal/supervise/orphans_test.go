package supervise

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startAppWithChild starts a supervising child whose app starts a child of
// its own, and returns the supervising child and that grandchild's PID.
func startAppWithChild(t *testing.T) (*exec.Cmd, int) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	cmd, _ := startSupervisingChild(t, "FAKEAPP_CHILD_PIDFILE="+pidFile)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the app did not start its child: %v", err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil || pid <= 0 {
		t.Fatalf("grandchild pid file holds %q", b)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	return cmd, pid
}

// TestStopOrphansAfterBulwarkKilled: the app's own child outlives a
// SIGKILLed Bulwark (Pdeathsig ends only the app's first process), and
// StopOrphans finds and stops it; the app's child under a Bulwark still running is
// left alone.
func TestStopOrphansAfterBulwarkKilled(t *testing.T) {
	killed, orphan := startAppWithChild(t)
	_, kept := startAppWithChild(t)

	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	// What StopOrphans is for: without it, the grandchild lives on.
	time.Sleep(500 * time.Millisecond)
	if !alive(orphan) {
		t.Fatalf("pid %d died with its Bulwark: nothing for StopOrphans to do, the test proves nothing", orphan)
	}

	// StopOrphans is findOrphans, then stopOrphans. The machine may hold
	// orphans of other tests running at the same time (e2e kills Bulwarks
	// on purpose and looks at what they left): stop only this test's.
	exe, _ := os.Executable()
	found, err := findOrphans("/proc", Scope([]string{exe, "--addr", "127.0.0.1:{port}"}, "")) // superviseChild's app
	if err != nil {
		t.Fatalf("findOrphans: %v", err)
	}
	var ours []Orphan
	for _, o := range found {
		if o.PID == kept {
			t.Errorf("found %d, whose Bulwark still runs, as an orphan", kept)
		}
		if o.PID == orphan {
			if o.Parent != killed.Process.Pid {
				t.Errorf("orphan %d named Bulwark %d, want %d", o.PID, o.Parent, killed.Process.Pid)
			}
			ours = append(ours, o)
		}
	}
	if len(ours) == 0 {
		t.Fatalf("found %v, not the killed Bulwark's grandchild %d", found, orphan)
	}
	if err := stopOrphans("/proc", ours, 5*time.Second); err != nil {
		t.Fatalf("stopOrphans: %v", err)
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("orphan %d to be gone", orphan), func() bool { return !alive(orphan) })
	if !alive(kept) {
		t.Errorf("pid %d, under a Bulwark still running, was stopped", kept)
	}
}

// TestFindOrphansRules checks which processes of a /proc count as
// orphans: those whose ParentEnv names the app's scope and a Bulwark not
// running, except session leaders, zombies, unparsable marks and processes
// in another PID namespace.
func TestFindOrphansRules(t *testing.T) {
	root := t.TempDir()
	stat := func(pid int, state byte, pgid, sid int, start uint64) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(dir, 0o755)
		// Fields 3.. of /proc/<pid>/stat; starttime is field 22.
		line := fmt.Sprintf("%d (py thon) %c 1 %d %d 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, state, pgid, sid, start)
		os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte("python3\x00app.py\x00"), 0o644)
	}
	environ := func(pid int, mark string) {
		if !strings.Contains(mark, "/") {
			mark += "/s1"
		}
		env := "PATH=/bin\x00" + ParentEnv + "=" + mark + "\x00HOME=/\x00"
		os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "environ"), []byte(env), 0o644)
	}
	stat(100, 'S', 1, 1, 500) // a Bulwark that runs
	stat(200, 'S', 1, 1, 600) // started at 600; the mark below says 550: reused
	for pid, mark := range map[int]string{
		1001: "100.500", // its Bulwark runs
		1002: "200.550", // its Bulwark's PID now names another process
		1003: "300.700", // its Bulwark is gone
		1004: "300.700", // a session leader: detached on purpose
		1005: "300.700", // a zombie
		1006: "garbage", // cannot tell
		1007: selfMark(),
		1010: "300.700/s2", // another app's: its own Bulwark stops it
		1011: "300.700/",   // no scope
	} {
		stat(pid, 'S', 1000, 900, 800)
		environ(pid, mark)
	}
	stat(1009, 'S', 1000, 900, 800) // in a container: its mark names PIDs there
	environ(1009, "300.700")
	nsLink := func(name, ns string) {
		os.MkdirAll(filepath.Join(root, name, "ns"), 0o755)
		os.Symlink(ns, filepath.Join(root, name, "ns", "pid"))
	}
	nsLink("self", "pid:[4026531836]")
	for pid := 1001; pid <= 1011; pid++ {
		if pid != 1009 {
			nsLink(strconv.Itoa(pid), "pid:[4026531836]")
		}
	}
	nsLink("1009", "pid:[4026532999]")
	stat(1004, 'S', 1004, 1004, 800)
	stat(1005, 'Z', 1000, 900, 800)
	stat(1008, 'S', 1000, 900, 800) // no mark at all

	found, err := findOrphans(root, "s1")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, o := range found {
		got = append(got, o.PID)
	}
	slices.Sort(got)
	if want := []int{1002, 1003}; !slices.Equal(got, want) {
		t.Errorf("orphans = %v, want %v", got, want)
	}
}

// TestStrangerOnPort: a port Bulwark picked for the app counts as taken
// by a stranger only when a user other than Bulwark's and root listens on
// it (another user can bind it between the pick and the app's bind).
func TestStrangerOnPort(t *testing.T) {
	self := os.Geteuid()
	for _, tt := range []struct {
		name string
		uid  int
		want bool
	}{
		{"the app, as Bulwark's user", self, false},
		{"root (docker-proxy)", 0, false},
		{"another user", self + 4242, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			os.MkdirAll(filepath.Join(root, "net"), 0o755)
			// 127.0.0.1:8002 (0x1F42) in LISTEN (0A), owned by uid.
			tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
				fmt.Sprintf("   0: 0100007F:1F42 00000000:0000 0A 00000000:00000000 00:00000000 00000000 %5d        0 231 1 0 100 0 0 10 0\n", tt.uid)
			os.WriteFile(filepath.Join(root, "net", "tcp"), []byte(tcp), 0o644)
			got, holders := strangerOnPort(root, "127.0.0.1:8002")
			if got != tt.want {
				t.Errorf("strangerOnPort = %v, want %v", got, tt.want)
			}
			if got && !strings.Contains(describeHolders(holders), fmt.Sprintf("uid %d", tt.uid)) {
				t.Errorf("holders %q do not name uid %d", describeHolders(holders), tt.uid)
			}
			if other, _ := strangerOnPort(root, "127.0.0.1:8003"); other {
				t.Errorf("another port counted as taken")
			}
		})
	}
}
