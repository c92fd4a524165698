package limit

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"bulwark/internal/clientip"
)

// ConnsOptions configures Conns.
type ConnsOptions struct {
	// Max caps the client connections open at once, over every listener
	// that shares the Conns. Zero or negative: no cap.
	Max int
	// PerIP caps the connections of one client address (an IPv6 client's
	// /64, see clientip.Key). Zero or negative: no cap.
	PerIP int
	// Exempt are peers PerIP does not apply to: trusted proxies, each of
	// which carries many clients. They still count towards Max.
	Exempt []netip.Prefix
	// FDReserve is the least number of file descriptors client
	// connections leave free, for the admin server, the app's connections,
	// spool files and logs. The reserve is the larger of it and a tenth of
	// FDLimit, and at most half of FDLimit. Negative: no reserve.
	FDReserve int
	// FDLimit is the process's descriptor limit. Zero: RLIMIT_NOFILE's
	// soft limit, which Go's runtime raises to the hard limit at start.
	FDLimit int
	// OpenFDs counts the descriptors open now. It is called at most once
	// per FDSampleInterval; nil reads /proc/self/fd. When it fails, only
	// the client connections are counted.
	OpenFDs func() (int, error)
	// Metrics receives bulwark_rejected_total; nil means a private set.
	Metrics *metrics.Set
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// FDSampleInterval is how often Conns counts the open descriptors. Between
// two counts it adds the client connections opened since, which it tracks
// exactly: a count costs a directory read, too much for every accept.
const FDSampleInterval = time.Second

// connsSettings are the options in force with what is derived from them.
type connsSettings struct {
	ConnsOptions
	fdCeiling int // refuse when this many descriptors are open; 0: no check
}

// Conns counts open client connections and refuses those over a cap. Its
// methods are safe for concurrent use; one Conns is shared by every
// client listener.
type Conns struct {
	set atomic.Pointer[connsSettings]

	mu    sync.Mutex
	open  int
	byKey map[netip.Addr]int32 // only keys with a connection open

	fdAt     atomic.Int64 // UnixNano of the last descriptor count
	fdOthers int          // descriptors that were not client connections then; under mu

	rejected map[string]*metrics.Counter // fixed at New: read without a lock
}

// NewConns returns a Conns for o.
func NewConns(o ConnsOptions) *Conns {
	if o.Metrics == nil {
		o.Metrics = metrics.NewSet()
	}
	c := &Conns{byKey: make(map[netip.Addr]int32), rejected: make(map[string]*metrics.Counter)}
	for _, r := range []string{ReasonMaxConns, ReasonMaxConnsPerIP, ReasonFDReserve} {
		c.rejected[r] = o.Metrics.GetOrCreateCounter(rejectedName(r))
	}
	o.Metrics.GetOrCreateGauge("bulwark_client_connections_open", func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(c.open)
	})
	c.Update(o)
	return c
}

// Update applies new caps and exemptions from now on; connections already
// open stay open. Metrics stays the one given to NewConns.
func (c *Conns) Update(o ConnsOptions) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OpenFDs == nil {
		o.OpenFDs = countOpenFDs
	}
	if o.FDLimit <= 0 {
		o.FDLimit = fdLimit()
	}
	s := &connsSettings{ConnsOptions: o}
	if o.FDReserve >= 0 && o.FDLimit > 0 {
		reserve := min(max(o.FDReserve, o.FDLimit/10), o.FDLimit/2)
		s.fdCeiling = o.FDLimit - reserve
	}
	c.set.Store(s)
	c.fdAt.Store(0) // count afresh
}

// Accept admits the connection nc just accepted, and returns it wrapped so
// that closing it gives its place back; or, when a cap refuses it, closes
// it at once (with a reset, so that no socket lingers in FIN_WAIT or
// TIME_WAIT for an attacker's sake), counts the refusal and returns nil
// and the reason. A connection whose peer is not an IP address (a unix
// socket) is counted towards Max only.
func (c *Conns) Accept(nc net.Conn) (net.Conn, string) {
	key, exempt := c.keyOf(nc.RemoteAddr())
	if reason := c.admit(key, exempt); reason != "" {
		if l, ok := nc.(interface{ SetLinger(int) error }); ok {
			l.SetLinger(0)
		}
		nc.Close()
		c.rejected[reason].Inc()
		return nil, reason
	}
	return &conn{Conn: nc, c: c, key: key}, ""
}

// keyOf returns the key a peer is counted under and whether PerIP spares it.
func (c *Conns) keyOf(addr net.Addr) (netip.Addr, bool) {
	var a netip.Addr
	switch t := addr.(type) {
	case *net.TCPAddr:
		a = t.AddrPort().Addr()
	case nil:
	default:
		_, a = clientip.Peer(t.String())
	}
	if !a.IsValid() {
		return a, true
	}
	a = a.Unmap()
	return clientip.Key(a), clientip.Trusted(a, c.set.Load().Exempt)
}

// admit counts a new connection of key, or returns why it is refused.
func (c *Conns) admit(key netip.Addr, exempt bool) string {
	s := c.set.Load()
	if s.fdCeiling > 0 && c.fdCountDue(s) {
		// After the decision, so this connection is judged by the last
		// count, whichever goroutine runs first.
		defer func() { go c.countFDs(s, 0) }()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case s.Max > 0 && c.open >= s.Max:
		return ReasonMaxConns
	case s.PerIP > 0 && !exempt && int(c.byKey[key]) >= s.PerIP:
		return ReasonMaxConnsPerIP
	case s.fdCeiling > 0 && c.fdOthers+c.open+1 >= s.fdCeiling: // +1: the new one
		return ReasonFDReserve
	}
	c.open++
	if key.IsValid() {
		c.byKey[key]++
	}
	return ""
}

// fdCountDue reports whether the open descriptors are to be counted again
// (the last count is FDSampleInterval old) off the accept path. The first
// count after a settings change runs here, inline, so a fresh process has
// one before it admits anything; later ones run on their own goroutine,
// since reading /proc/self/fd with 10 000 entries takes about 10 ms, too
// long to stall the accept loop each second.
func (c *Conns) fdCountDue(s *connsSettings) bool {
	now := s.Now().UnixNano()
	at := c.fdAt.Load()
	if now-at < int64(FDSampleInterval) || !c.fdAt.CompareAndSwap(at, now) {
		return false
	}
	if at == 0 {
		c.countFDs(s, 1) // the connection being admitted is open already
		return false
	}
	return true
}

// countFDs counts the open descriptors and keeps how many are not client
// connections; admitting are those open but not yet in c.open. When the
// count fails, the last figure stays (at first: only client connections
// are counted).
func (c *Conns) countFDs(s *connsSettings, admitting int) {
	n, err := s.OpenFDs()
	if err != nil {
		return
	}
	c.mu.Lock()
	c.fdOthers = max(n-c.open-admitting, 0)
	c.mu.Unlock()
}

// release gives back the place of a connection of key.
func (c *Conns) release(key netip.Addr) {
	c.mu.Lock()
	c.open--
	if key.IsValid() {
		if n := c.byKey[key] - 1; n > 0 {
			c.byKey[key] = n
		} else {
			delete(c.byKey, key)
		}
	}
	c.mu.Unlock()
}

// Open reports the client connections open now, and those of the client
// address a (counted under clientip.Key).
func (c *Conns) Open(a netip.Addr) (all, ofAddr int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, int(c.byKey[clientip.Key(a)])
}

// conn is an admitted connection; Close gives its place back once.
type conn struct {
	net.Conn
	c      *Conns
	key    netip.Addr
	closed atomic.Bool
}

// NetConn returns the accepted connection, as tls.Conn's NetConn does, for
// code that needs the *net.TCPConn.
func (cn *conn) NetConn() net.Conn { return cn.Conn }

// CloseWrite shuts the sending side down (a lingering close) when the
// accepted connection can.
func (cn *conn) CloseWrite() error {
	if cw, ok := cn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SetLinger sets SO_LINGER when the accepted connection can.
func (cn *conn) SetLinger(sec int) error {
	if l, ok := cn.Conn.(interface{ SetLinger(int) error }); ok {
		return l.SetLinger(sec)
	}
	return errors.ErrUnsupported
}

// Close closes the connection and, the first time, releases its place.
func (cn *conn) Close() error {
	err := cn.Conn.Close()
	if cn.closed.CompareAndSwap(false, true) {
		cn.c.release(cn.key)
	}
	return err
}
