package observe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
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

// Queries that count connections in use. For PostgreSQL only client
// backends count: the server's own processes (checkpointer, autovacuum
// launcher, ...) also appear in pg_stat_activity but take no pool slot.
const (
	mysqlQuery    = "SHOW STATUS LIKE 'Threads_connected'"
	postgresQuery = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
)

// dbProbe polls a database server for its number of connections in use.
type dbProbe struct {
	kind     string // "mysql" or "postgres"
	redacted string // the URL without its password, for logs
	db       *sql.DB
	logger   *slog.Logger
	logEvery rate.Sometimes

	conns  *metrics.Gauge
	errors *metrics.Counter

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
// timeouts default to dbTimeout.
func mysqlConfig(u *url.URL) (*mysql.Config, error) {
	pass, _ := u.User.Password()
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	dsn := u.User.Username() + ":" + pass + "@tcp(" + addr + ")/" + strings.TrimPrefix(u.Path, "/")
	if u.RawQuery != "" {
		dsn += "?" + u.RawQuery
	}
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("observe database %s: %w", u.Redacted(), err)
	}
	q := u.Query()
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

// probe runs the query once and records the result; errors are counted and
// logged at most once per five minutes, and never stop the loop.
func (p *dbProbe) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	n, err := p.query(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return // shutting down
	}
	p.mu.Lock()
	wasFailing := p.last.Error != ""
	p.last.At = time.Now()
	if err != nil {
		p.last.Error = err.Error()
	} else {
		p.last.Error = ""
		p.last.Connections = n
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
	p.conns.Set(float64(n))
	if wasFailing {
		p.logger.Info("database probe recovered", "database", p.redacted, "connections", n)
	}
}

func (p *dbProbe) query(ctx context.Context) (int64, error) {
	var n int64
	switch p.kind {
	case "mysql":
		var name string
		if err := p.db.QueryRowContext(ctx, mysqlQuery).Scan(&name, &n); err != nil {
			return 0, fmt.Errorf("querying Threads_connected: %w", err)
		}
	default:
		if err := p.db.QueryRowContext(ctx, postgresQuery).Scan(&n); err != nil {
			return 0, fmt.Errorf("querying pg_stat_activity: %w", err)
		}
	}
	return n, nil
}

func (p *dbProbe) status() DBStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *dbProbe) close() { _ = p.db.Close() }
