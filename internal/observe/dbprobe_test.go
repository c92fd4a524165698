package observe

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"
)

func TestMySQLConfig(t *testing.T) {
	tests := []struct {
		in                       string
		user, pass, addr, dbname string
		param                    string
	}{
		{"mysql://app:s%40cret@127.0.0.1:3307/shop", "app", "s@cret", "127.0.0.1:3307", "shop", ""},
		{"mysql://root@localhost/", "root", "", "localhost:3306", "", ""},
		{"mysql://a:p%2F%3Fw@db.internal/x", "a", "p/?w", "db.internal:3306", "x", ""},
		{"mysql://u:p@[::1]:3306/db?x=y", "u", "p", "[::1]:3306", "db", "y"},
		{"mysql://u:p@/db?socket=/var/lib/mysql/mysql.sock&x=y", "u", "p", "/var/lib/mysql/mysql.sock", "db", "y"},
		{"mysql://u:p@localhost/db?socket=/run/mysqld/mysqld.sock", "u", "p", "/run/mysqld/mysqld.sock", "db", ""},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tt.in, err)
		}
		c, err := mysqlConfig(u)
		if err != nil {
			t.Errorf("mysqlConfig(%q): %v", tt.in, err)
			continue
		}
		wantNet := "tcp"
		if strings.HasPrefix(tt.addr, "/") {
			wantNet = "unix"
		}
		if c.User != tt.user || c.Passwd != tt.pass || c.Addr != tt.addr || c.DBName != tt.dbname ||
			c.Params["x"] != tt.param || c.Timeout != dbTimeout || c.Net != wantNet || c.Params["socket"] != "" {
			t.Errorf("mysqlConfig(%q) = user %q pass %q addr %q db %q param x %q timeout %v; want %q %q %q %q %q %v",
				tt.in, c.User, c.Passwd, c.Addr, c.DBName, c.Params["x"], c.Timeout,
				tt.user, tt.pass, tt.addr, tt.dbname, tt.param, dbTimeout)
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDBProbeUnreachable(t *testing.T) {
	port := freePort(t) // nothing listens there
	for _, scheme := range []string{"mysql", "postgres"} {
		t.Run(scheme, func(t *testing.T) {
			var logs bytes.Buffer
			set := metrics.NewSet()
			dsn := fmt.Sprintf("%s://bob:hunter2@127.0.0.1:%d/db", scheme, port)
			if scheme == "postgres" {
				dsn += "?sslmode=disable"
			}
			s, err := New(Options{Snapshot: fakeSnapshot(), Metrics: set, Database: dsn,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("New with an unreachable database: %v (must not be fatal)", err)
			}
			defer s.db.close()
			s.db.probe(t.Context())
			s.db.probe(t.Context())
			st := s.status(false, 0)
			if st.DB == nil || st.DB.Error == "" || st.DB.Connections != -1 || st.DB.Kind != scheme {
				t.Errorf("status db = %+v, want kind %s, an error and -1 connections", st.DB, scheme)
			}
			body := metricsText(t, s.Handler(), "")
			for _, want := range []string{"bulwark_db_probe_errors_total 2", "bulwark_db_connections -1"} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %q", want)
				}
			}
			if got := strings.Count(logs.String(), "database probe failed"); got != 1 {
				t.Errorf("logged the failure %d times in two probes, want 1 (rate-limited):\n%s", got, logs.String())
			}
			if strings.Contains(logs.String(), "hunter2") {
				t.Errorf("log shows the database password:\n%s", logs.String())
			}
		})
	}
}

// dbCase is a database server started for one test.
type dbCase struct {
	url     string // for Options.Database
	unixURL string // the same server over its unix socket
	user    string // the user both connect as
	sleep   string // a query that runs for two seconds
	open    func() (*sql.DB, error)
}

// probeUntilUp probes until the server answers or ~20 s pass.
func probeUntilUp(t *testing.T, p *dbProbe) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		p.probe(t.Context())
		if st := p.status(); st.Error == "" && st.Connections >= 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("database never answered the probe: %s", p.status().Error)
}

// checkProbeCounts opens three connections on the side and checks that the
// gauge goes up by three, counted under the probe's user as idle, then
// down again when they close; that a running query's age shows; and that
// the probe works over the unix socket too.
func checkProbeCounts(t *testing.T, dc dbCase) {
	set := metrics.NewSet()
	s, err := New(Options{Snapshot: fakeSnapshot(), Metrics: set, Database: dc.url})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.db.close()
	probeUntilUp(t, s.db)
	first := s.db.status()
	before := first.Connections
	if before != 0 || first.User != dc.user {
		t.Errorf("probe alone: connections = %d, user %q; want 0 (its own left out), %q", before, first.User, dc.user)
	}

	side, err := dc.open()
	if err != nil {
		t.Fatalf("opening side connections: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var conns []*sql.Conn
	for range 3 {
		c, err := side.Conn(ctx)
		if err != nil {
			t.Fatalf("side connection: %v", err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatalf("side ping: %v", err)
		}
		conns = append(conns, c)
	}
	// The server may show a connection's last command (a ping) for a moment
	// after it ended: probe until the three show as idle.
	var st DBStatus
	for i := 0; i < 50; i++ {
		s.db.probe(t.Context())
		if st = s.db.status(); len(st.Groups) == 1 && st.Groups[0].State == "idle" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, want := st.Connections, before+3; got != want {
		t.Errorf("connections with 3 more open = %d, want %d", got, want)
	}
	if st.AppConnections != 3 || len(st.Groups) != 1 || st.Groups[0] != (DBGroup{User: dc.user, State: "idle", Count: 3}) {
		t.Errorf("with 3 idle side connections: app connections %d, groups %+v; want 3 and one group %s idle 3",
			st.AppConnections, st.Groups, dc.user)
	}
	body := metricsText(t, s.Handler(), "")
	for _, want := range []string{fmt.Sprintf("bulwark_db_connections %d", before+3), "bulwark_db_app_connections 3"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// A query running on one side connection shows its age.
	running := make(chan error, 1)
	go func() { _, err := conns[0].ExecContext(ctx, dc.sleep); running <- err }()
	var longest float64
	for i := 0; i < 40 && longest < 1; i++ {
		time.Sleep(100 * time.Millisecond)
		s.db.probe(t.Context())
		longest = s.db.status().LongestQuerySeconds
	}
	if longest < 1 {
		t.Errorf("longest query while %q runs = %.1fs, want at least 1s", dc.sleep, longest)
	}
	if err := <-running; err != nil {
		t.Errorf("%s: %v", dc.sleep, err)
	}

	for _, c := range conns {
		c.Close()
	}
	side.Close()
	// The server notices closed connections asynchronously.
	var got int64
	for i := 0; i < 50; i++ {
		s.db.probe(t.Context())
		if got = s.db.status().Connections; got == before {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != before {
		t.Errorf("connections after closing the 3 = %d, want %d", got, before)
	}

	us, err := New(Options{Snapshot: fakeSnapshot(), Metrics: metrics.NewSet(), Database: dc.unixURL})
	if err != nil {
		t.Fatalf("New over the unix socket: %v", err)
	}
	defer us.db.close()
	probeUntilUp(t, us.db)
	if st := us.db.status(); st.User != dc.user {
		t.Errorf("probe over the unix socket (%s): user %q, want %q", dc.unixURL, st.User, dc.user)
	}
}

// requireRoot skips (or fails under CI) when the test cannot start servers
// as another user.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skip("needs root to run the database server as its own user; skipping because CI is unset")
	}
	t.Fatal("needs root under CI")
}

// startProc starts cmd and stops it by PID when the test ends: SIGTERM,
// then SIGKILL after 10 s.
func startProc(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
}

func TestDBProbeMariaDB(t *testing.T) {
	requireTool(t, "/usr/sbin/mariadbd", "mariadb-server")
	requireTool(t, "/usr/bin/mysql_install_db", "mariadb-server")
	requireRoot(t)
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "mysqld.sock")
	install := exec.Command("/usr/bin/mysql_install_db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mysql_install_db: %v\n%s", err, out)
	}
	port := freePort(t)
	var logs syncBuffer
	cmd := exec.Command("/usr/sbin/mariadbd", "--no-defaults", "--datadir="+data, "--socket="+sock,
		"--port="+strconv.Itoa(port), "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
		"--skip-name-resolve", "--pid-file="+filepath.Join(dir, "mysqld.pid"), "--innodb-buffer-pool-size=16M")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	startProc(t, cmd)

	dsn := fmt.Sprintf("mysql://root@127.0.0.1:%d/mysql", port)
	checkProbeCounts(t, dbCase{url: dsn, unixURL: "mysql://root@/mysql?socket=" + sock, user: "root",
		sleep: "SELECT SLEEP(2)", open: func() (*sql.DB, error) {
			c := mysql.NewConfig()
			c.User, c.Net, c.Addr, c.DBName = "root", "tcp", fmt.Sprintf("127.0.0.1:%d", port), "mysql"
			conn, err := mysql.NewConnector(c)
			if err != nil {
				return nil, err
			}
			return sql.OpenDB(conn), nil
		}})
	if t.Failed() {
		t.Logf("mariadbd output:\n%s", logs.String())
	}
}

func TestDBProbePostgres(t *testing.T) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		requireTool(t, "/usr/lib/postgresql/15/bin/postgres", "postgresql")
	}
	requireRoot(t)
	bin := filepath.Dir(bins[len(bins)-1])
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("the postgresql package is installed but user postgres is missing: %v", err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}

	// t.TempDir's parent is private to root; postgres needs its own.
	dir, err := os.MkdirTemp("", "bulwark-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("chown %s: %v", dir, err)
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
		"--no-sync", "--locale=C", "-E", "UTF8")
	initdb.SysProcAttr, initdb.Dir = cred, dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	var logs syncBuffer
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=16MB")
	cmd.SysProcAttr, cmd.Dir = cred, dir
	cmd.Stdout, cmd.Stderr = &logs, &logs
	startProc(t, cmd)

	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	unixDSN := fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", dir, port)
	checkProbeCounts(t, dbCase{url: dsn, unixURL: unixDSN, user: "postgres", sleep: "SELECT pg_sleep(2)",
		open: func() (*sql.DB, error) {
			conn, err := pq.NewConnector(dsn)
			if err != nil {
				return nil, err
			}
			return sql.OpenDB(conn), nil
		}})
	if t.Failed() {
		t.Logf("postgres output:\n%s", logs.String())
	}
}

func TestAppWorkers(t *testing.T) {
	p := func(cmd string) ProcInfo { return ProcInfo{Cmdline: cmd} }
	tests := []struct {
		procs []ProcInfo
		want  int
	}{
		{nil, 0},
		{[]ProcInfo{p("uvicorn app:app")}, 1},
		{[]ProcInfo{p("uvicorn app:app --workers 2"), p("python3 -c from multiprocessing.resource_tracker import main"),
			p("python3 -c from multiprocessing.spawn import spawn_main"), p("python3 -c from multiprocessing.spawn import spawn_main")}, 2},
		{[]ProcInfo{p("gunicorn: master"), p("gunicorn: worker"), p("gunicorn: worker"), p("gunicorn: worker")}, 3},
	}
	for _, tt := range tests {
		if got := appWorkers(tt.procs); got != tt.want {
			t.Errorf("appWorkers(%d procs) = %d, want %d", len(tt.procs), got, tt.want)
		}
	}
}

// TestDBAppBudget checks the budget /status reports: the pool of one
// process times the app's workers.
func TestDBAppBudget(t *testing.T) {
	snap := func() Snapshot {
		s := fakeSnapshot()() // main process and one more: one worker
		s.DBPoolPerProcess = 10
		return s
	}
	s, err := New(Options{Snapshot: snap, Database: "postgres://app@127.0.0.1:1/app?sslmode=disable"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.db.close()
	d := s.status(false, 0).DB
	if d == nil || d.AppProcesses != 1 || d.AppBudget != 10 {
		t.Errorf("status().DB = %+v; want 1 app process and a budget of 10", d)
	}
}

// TestSetDatabase checks that a reload's new [observe] database replaces
// the probe while the server runs, that "" stops probing, and that a bad
// URL leaves the running probe alone.
func TestSetDatabase(t *testing.T) {
	s, err := New(Options{Listen: "127.0.0.1:0", Snapshot: fakeSnapshot(), Database: "mysql://a@127.0.0.1:1/x",
		DBInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	kind := func() string {
		if d := s.status(false, 0).DB; d != nil {
			return d.Kind
		}
		return ""
	}
	if got := kind(); got != "mysql" {
		t.Errorf("before SetDatabase: db kind %q, want mysql", got)
	}
	if err := s.SetDatabase("postgres://b@127.0.0.1:1/y?sslmode=disable"); err != nil {
		t.Fatalf("SetDatabase(postgres): %v", err)
	}
	if got := kind(); got != "postgres" {
		t.Errorf("after SetDatabase(postgres): db kind %q, want postgres", got)
	}
	if err := s.SetDatabase("redis://c@127.0.0.1/"); err == nil {
		t.Errorf("SetDatabase(redis://) = nil error, want it refused")
	}
	if got := kind(); got != "postgres" {
		t.Errorf("after a refused SetDatabase: db kind %q, want postgres still", got)
	}
	if err := s.SetDatabase(""); err != nil {
		t.Fatalf("SetDatabase(\"\"): %v", err)
	}
	if got := kind(); got != "" {
		t.Errorf("after SetDatabase(\"\"): db kind %q, want none", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
}

// syncBuffer is a bytes.Buffer that a server process's output goroutine
// writes while a failing test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
