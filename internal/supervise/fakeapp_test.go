package supervise

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestMain re-executes the test binary as the supervised app (FAKEAPP set)
// or as a supervising Bulwark to be SIGKILLed (SUPERVISE_CHILD set).
func TestMain(m *testing.M) {
	switch {
	case os.Getenv("FAKEAPP_SLEEPER") != "":
		time.Sleep(2 * time.Minute) // the app's own child, for orphan tests
		os.Exit(0)
	case os.Getenv("FAKEAPP") != "":
		fakeApp()
	case os.Getenv("SUPERVISE_CHILD") != "":
		superviseChild()
	default:
		os.Exit(m.Run())
	}
}

// fakeApp is an HTTP app whose behaviour is chosen by environment variables:
//
//	FAKEAPP_EXIT=N         print to stderr and exit with code N at once
//	FAKEAPP_DELAY=D        sleep D before listening (slow start)
//	FAKEAPP_CRASH_AFTER=N  exit with code 3 after serving N requests
//	FAKEAPP_CRASH_CODE=C   the code it then exits with (0: a planned exit,
//	                       as uvicorn's --limit-max-requests)
//	FAKEAPP_IGNORE_TERM=1  ignore SIGTERM
//	FAKEAPP_CHILD_PIDFILE=F  start a child of its own (as uvicorn --workers
//	                       does) that sleeps, and write its PID to F
//
// It listens on "--addr ADDR" (or FAKEAPP_ADDR; "unix:/path" for a socket)
// and serves /health, / (its PID), /env (its environment as JSON),
// /slow?ms=N and /leak?mb=N. It exits by itself after two minutes so a
// broken test cannot leave it behind.
func fakeApp() {
	time.AfterFunc(2*time.Minute, func() { os.Exit(9) })
	if code := os.Getenv("FAKEAPP_EXIT"); code != "" {
		fmt.Fprintln(os.Stderr, "ERROR: fakeapp: failing at start on purpose")
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	addr := os.Getenv("FAKEAPP_ADDR")
	for i, a := range os.Args {
		if a == "--addr" && i+1 < len(os.Args) {
			addr = os.Args[i+1]
		}
	}
	term := make(chan os.Signal, 1)
	if os.Getenv("FAKEAPP_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	if d, err := time.ParseDuration(os.Getenv("FAKEAPP_DELAY")); err == nil {
		time.Sleep(d)
	}
	if f := os.Getenv("FAKEAPP_CHILD_PIDFILE"); f != "" {
		exe, _ := os.Executable()
		child := exec.Command(exe)
		child.Env = append(os.Environ(), "FAKEAPP_SLEEPER=1")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "fakeapp: starting its child:", err)
			os.Exit(5)
		}
		os.WriteFile(f, []byte(strconv.Itoa(child.Process.Pid)), 0o600)
	}
	crashAfter, _ := strconv.ParseInt(os.Getenv("FAKEAPP_CRASH_AFTER"), 10, 64)
	var served atomic.Int64
	var leaked [][]byte
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	app := http.NewServeMux()
	app.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%d", os.Getpid()) })
	app.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(os.Environ()) })
	app.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintf(w, "%d", os.Getpid())
	})
	app.HandleFunc("/leak", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = byte(i)
		}
		leaked = append(leaked, b)
		fmt.Fprintf(w, "%d", len(leaked))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		app.ServeHTTP(w, r)
		if n := served.Add(1); crashAfter > 0 && n >= crashAfter {
			go func() {
				time.Sleep(20 * time.Millisecond)
				fmt.Fprintf(os.Stderr, "fakeapp: dying after %d requests\n", n)
				code := 3
				if c, err := strconv.Atoi(os.Getenv("FAKEAPP_CRASH_CODE")); err == nil {
					code = c
				}
				os.Exit(code)
			}()
		}
	})
	network, address := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", p
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeapp:", err)
		os.Exit(4)
	}
	fmt.Println("fakeapp listening on", addr)
	fmt.Fprintln(os.Stderr, "fakeapp: stderr works")
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	<-term
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	fmt.Fprintln(os.Stderr, "fakeapp: stopped on SIGTERM")
	os.Exit(0)
}

// superviseChild runs a Supervisor of the fake app and prints the app's PID
// as "APP_PID=N"; the test SIGKILLs it. It exits by itself after a minute.
func superviseChild() {
	time.AfterFunc(time.Minute, func() { os.Exit(9) })
	exe, _ := os.Executable()
	s, err := New(Options{
		Command:   []string{exe, "--addr", "127.0.0.1:{port}"},
		Env:       map[string]string{"FAKEAPP": "1", "SUPERVISE_CHILD": ""},
		Health:    "/health",
		OnStart:   func(pid int) { fmt.Printf("APP_PID=%d\n", pid) },
		OnAddress: func(string) { fmt.Println("READY") },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s.Run(context.Background())
}
