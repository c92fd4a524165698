package supervise

// Restart counts across a binary upgrade: the new Bulwark process starts a
// supervisor of its own, and adds the old one's counts to it before Run
// (the caller carries them through upgrade.Upgrader's state handover).

// AddRestarts adds counts, by reason, to the restart counters of Status
// and of bulwark_app_restarts_total. Reasons this supervisor does not
// count (from another version) and counts below 1 are ignored.
func (s *Supervisor) AddRestarts(counts map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for reason, n := range counts {
		c, ok := s.restarts[reason]
		if !ok || n < 1 {
			continue
		}
		c.Add(n)
		s.status.Restarts[reason] += n
	}
}

// WorkerRestarts returns each worker's restart counts by reason, in
// worker order, for a handover.
func (p *Pool) WorkerRestarts() []map[string]int {
	out := make([]map[string]int, len(p.workers))
	for i, wk := range p.workers {
		out[i] = wk.sup.Status().Restarts
	}
	return out
}

// AddRestarts adds counts[i] to worker i's restart counters (see
// Supervisor.AddRestarts); counts of workers the pool does not have (it
// was smaller before an upgrade) are ignored.
func (p *Pool) AddRestarts(counts []map[string]int) {
	for i, c := range counts {
		if i < len(p.workers) {
			p.workers[i].sup.AddRestarts(c)
		}
	}
}

// Recycles returns the pool's recycle counts by reason, for a handover.
func (p *Pool) Recycles() map[string]int {
	out := make(map[string]int, len(p.recycles))
	for r, c := range p.recycles {
		if n := int(c.Get()); n > 0 {
			out[r] = n
		}
	}
	return out
}

// AddRecycles adds counts, by reason, to bulwark_app_recycles_total, as
// AddRestarts does for restarts; reasons the pool does not count are
// ignored.
func (p *Pool) AddRecycles(counts map[string]int) {
	for r, n := range counts {
		if c, ok := p.recycles[r]; ok && n > 0 {
			c.Add(n)
		}
	}
}
