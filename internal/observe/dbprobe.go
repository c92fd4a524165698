package observe

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/go-sql-driver/mysql"
	"github.com/lib/pq"
	"golang.org/x/time/rate"
)

// dbTimeout bounds one probe: connecting and the query together.
const dbTimeout = 5 * time.Second

// Queries that list the server's client connections, the probe's own left
// out, and the probe's user. For MySQL, server threads (Daemon: InnoDB's
// and the event scheduler's) are no connections. For PostgreSQL only client
// backends count: the server's own processes (checkpointer, autovacuum
// launcher, ...) also appear in pg_stat_activity but take no pool slot.
const (
	mysqlQuery = "SELECT IFNULL(USER, ''), IFNULL(COMMAND, ''), IFNULL(TIME, 0) FROM information_schema.PROCESSLIST " +
		"WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon'"
	mysqlUser     = "SELECT SUBSTRING_INDEX(USER(), '@', 1)" // as the client named itself, as PROCESSLIST shows it
	postgresQuery = "SELECT COALESCE(usename, ''), COALESCE(state, ''), " +
		"COALESCE(EXTRACT(EPOCH FROM (now() - query_start)), 0)::float8 FROM pg_stat_activity " +
		"WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
	postgresUser = "SELECT current_user"
)

// maxDBRows bounds how many connections one probe reads.
const maxDBRows = 100000

// dbProbe polls a database server for its number of connections in use.
type dbProbe struct {
	kind     string // "mysql" or "postgres"
	redacted string // the URL without its password, for logs
	db       *sql.DB
	logger   *slog.Logger
	logEvery rate.Sometimes

	conns   *metrics.Gauge
	appConn *metrics.Gauge
	longest *metrics.Gauge
	errors  *metrics.Counter

	mu   sync.Mutex // protects last
	last DBStatus
}

// newDBProbe parses rawURL and prepares (but does not open) a connection.
func newDBProbe(rawURL string, set *metrics.Set, logger *slog.Logger) (*dbProbe, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("observe database: %w", err)
	}
	p := &dbProbe{
		redacted: u.Redacted(),
		logger:   logger,
		logEvery: rate.Sometimes{First: 1, Interval: 5 * time.Minute},
		conns:    set.GetOrCreateGauge("bulwark_db_connections", nil),
		appConn:  set.GetOrCreateGauge("bulwark_db_app_connections", nil),
		longest:  set.GetOrCreateGauge("bulwark_db_longest_query_seconds", nil),
		errors:   set.GetOrCreateCounter("bulwark_db_probe_errors_total"),
	}
	switch u.Scheme {
	case "mysql":
		p.kind = "mysql"
		c, err := mysqlConfig(u)
		if err != nil {
			return nil, err
		}
		conn, err := mysql.NewConnector(c)
		if err != nil {
			return nil, fmt.Errorf("observe database %s: %w", p.redacted, err)
		}
		p.db = sql.OpenDB(conn)
	case "postgres", "postgresql":
		p.kind = "postgres"
		q := u.Query()
		if q.Get("connect_timeout") == "" {
			q.Set("connect_timeout", strconv.Itoa(int(dbTimeout/time.Second)))
		}
		u.RawQuery = q.Encode()
		conn, err := pq.NewConnector(u.String())
		if err != nil {
			return nil, fmt.Errorf("observe database %s: %w", p.redacted, err)
		}
		p.db = sql.OpenDB(conn)
	default:
		return nil, fmt.Errorf("observe database %s: scheme %q is not mysql:// or postgres://", p.redacted, u.Scheme)
	}
	// One connection, reused between probes, so the probe itself adds one
	// steady connection to the count rather than churning.
	p.db.SetMaxOpenConns(1)
	p.db.SetMaxIdleConns(1)
	p.db.SetConnMaxLifetime(10 * time.Minute)
	// -1 until the first successful probe: "unknown", not "none".
	p.last = DBStatus{Kind: p.kind, Connections: -1}
	p.conns.Set(-1)
	return p, nil
}

// mysqlConfig turns mysql://user:pass@host:port/db?params into a driver
// config; params are read by the driver as in its own DSN, and the
// timeouts default to dbTimeout. A unix socket, as cPanel's
// /var/lib/mysql/mysql.sock, is given as ?socket=PATH (the host is then
// ignored and may be left out: mysql://user:pass@/db?socket=PATH).
func mysqlConfig(u *url.URL) (*mysql.Config, error) {
	pass, _ := u.User.Password()
	q := u.Query()
	addr := "tcp(" + u.Host + ")"
	if u.Port() == "" {
		addr = "tcp(" + net.JoinHostPort(u.Hostname(), "3306") + ")"
	}
	if sock := q.Get("socket"); sock != "" {
		if !strings.HasPrefix(sock, "/") {
			return nil, fmt.Errorf("observe database %s: socket %q must be an absolute path, such as /var/lib/mysql/mysql.sock", u.Redacted(), sock)
		}
		addr = "unix(" + sock + ")"
		q.Del("socket") // the driver would send it to the server as a variable
	}
	dsn := u.User.Username() + ":" + pass + "@" + addr + "/" + strings.TrimPrefix(u.Path, "/")
	if len(q) > 0 {
		dsn += "?" + q.Encode()
	}
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("observe database %s: %w", u.Redacted(), err)
	}
	if q.Get("timeout") == "" {
		c.Timeout = dbTimeout
	}
	if q.Get("readTimeout") == "" {
		c.ReadTimeout = dbTimeout
	}
	if q.Get("writeTimeout") == "" {
		c.WriteTimeout = dbTimeout
	}
	return c, nil
}

// run probes at once, then every interval, until ctx is done.
func (p *dbProbe) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.probe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe runs the queries once and records the result; errors are counted
// and logged at most once per five minutes, and never stop the loop.
func (p *dbProbe) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	r, err := p.query(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return // shutting down
	}
	p.mu.Lock()
	wasFailing := p.last.Error != ""
	p.last.At = time.Now()
	if err != nil {
		p.last.Error = err.Error()
	} else {
		at := p.last.At
		r.Kind = p.kind
		p.last = r
		p.last.At = at
	}
	p.mu.Unlock()
	if err != nil {
		p.errors.Inc()
		p.logEvery.Do(func() {
			p.logger.Error("database probe failed (repeats are logged at most every 5 minutes)",
				"database", p.redacted, "err", err)
		})
		return
	}
	p.conns.Set(float64(r.Connections))
	p.appConn.Set(float64(r.AppConnections))
	p.longest.Set(r.LongestQuerySeconds)
	if wasFailing {
		p.logger.Info("database probe recovered", "database", p.redacted, "connections", r.Connections)
	}
}

// query lists the server's connections and sums them up.
func (p *dbProbe) query(ctx context.Context) (DBStatus, error) {
	list, userQ := postgresQuery, postgresUser
	if p.kind == "mysql" {
		list, userQ = mysqlQuery, mysqlUser
	}
	var r DBStatus
	if err := p.db.QueryRowContext(ctx, userQ).Scan(&r.User); err != nil {
		return r, fmt.Errorf("querying the probe's user: %w", err)
	}
	rows, err := p.db.QueryContext(ctx, list)
	if err != nil {
		return r, fmt.Errorf("listing connections: %w", err)
	}
	defer rows.Close()
	groups := map[DBGroup]int64{}
	for n := 0; n < maxDBRows && rows.Next(); n++ {
		var user, state string
		var age float64
		if err := rows.Scan(&user, &state, &age); err != nil {
			return r, fmt.Errorf("listing connections: %w", err)
		}
		state = p.stateName(state)
		groups[DBGroup{User: user, State: state}]++
		r.Connections++
		if user == r.User {
			r.AppConnections++
		}
		if state == "active" && age > r.LongestQuerySeconds {
			r.LongestQuerySeconds = age
		}
	}
	if err := rows.Err(); err != nil {
		return r, fmt.Errorf("listing connections: %w", err)
	}
	for g, n := range groups {
		g.Count = n
		r.Groups = append(r.Groups, g)
	}
	slices.SortFunc(r.Groups, func(a, b DBGroup) int {
		if a.Count != b.Count {
			return cmp.Compare(b.Count, a.Count)
		}
		return cmp.Or(strings.Compare(a.User, b.User), strings.Compare(a.State, b.State))
	})
	if len(r.Groups) > MaxDBGroups {
		r.Groups = r.Groups[:MaxDBGroups]
	}
	return r, nil
}

// stateName names a connection's state alike for both servers: MySQL's
// Sleep is idle and Query active, as PostgreSQL says; other MySQL commands
// are lower-cased, and a state PostgreSQL hides (another user's, without
// pg_read_all_stats) is "unknown".
func (p *dbProbe) stateName(s string) string {
	if p.kind == "mysql" {
		switch s {
		case "Sleep":
			return "idle"
		case "Query":
			return "active"
		}
		return strings.ToLower(s)
	}
	if s == "" {
		return "unknown"
	}
	return s
}

func (p *dbProbe) status() DBStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *dbProbe) close() { _ = p.db.Close() }
