package clientip

import (
	"net/netip"
	"sync"
)

// Counts counts something held per client (its key, see Key): request
// bodies arriving, static files being sent. Its zero value is ready;
// entries are removed at zero, so its size follows what is held.
type Counts struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// Acquire counts one more for client, or reports false when client holds
// limit already. A limit of zero or less means no cap.
func (c *Counts) Acquire(client netip.Addr, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = make(map[netip.Addr]int)
	}
	if limit > 0 && c.n[client] >= limit {
		return false
	}
	c.n[client]++
	return true
}

// Release counts one less for client.
func (c *Counts) Release(client netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[client] <= 1 {
		delete(c.n, client)
		return
	}
	c.n[client]--
}
