package app

import (
	"encoding/json"
	"maps"

	"bulwark/internal/upgrade"
)

// handover is the state one Bulwark process hands the next in a binary
// upgrade: the app's restart and a pool's recycle counts, so that `bulwark
// status`, bulwark_app_restarts_total and bulwark_app_recycles_total do not
// start from zero again.
type handover struct {
	// Restarts are the supervised app's counts by reason.
	Restarts map[string]int `json:"restarts,omitempty"`
	// Workers are a pool's counts, one map per worker.
	Workers []map[string]int `json:"workers,omitempty"`
	// Recycles are a pool's recycle counts by reason.
	Recycles map[string]int `json:"recycles,omitempty"`
}

// takeHandover adds the old process's restart counts to the supervisor's
// or the pool's, and makes the next upgrade hand this process's on. Counts
// pass between a single app and a pool too: a single app's are worker 0's,
// and a pool's are summed for a single app.
func (a *App) takeHandover(upg *upgrade.Upgrader) {
	if a.sup == nil && a.pool == nil {
		return
	}
	if b := upg.Handover(); b != nil {
		var h handover
		if err := json.Unmarshal(b, &h); err != nil {
			a.log.Warn("the old process's restart counts are unreadable: counting from zero", "err", err)
		} else {
			a.addRestarts(h)
		}
	}
	upg.SetHandover(func() []byte {
		var h handover
		if a.pool != nil {
			h.Workers, h.Recycles = a.pool.WorkerRestarts(), a.pool.Recycles()
		} else {
			h.Restarts = a.sup.Status().Restarts
		}
		b, err := json.Marshal(h)
		if err != nil {
			return nil
		}
		return b
	})
}

func (a *App) addRestarts(h handover) {
	if a.pool != nil {
		if h.Workers == nil && h.Restarts != nil {
			h.Workers = []map[string]int{h.Restarts}
		}
		a.pool.AddRestarts(h.Workers)
		a.pool.AddRecycles(h.Recycles)
		return
	}
	sum := maps.Clone(h.Restarts)
	if sum == nil {
		sum = map[string]int{}
	}
	for _, w := range h.Workers {
		for r, n := range w {
			sum[r] += n
		}
	}
	a.sup.AddRestarts(sum)
}

// restartCounts returns the app's restart counts by reason, a pool's
// summed; nil without a supervised app.
func (a *App) restartCounts() map[string]int {
	switch {
	case a.pool != nil:
		st, _ := a.pool.Status()
		return st.Restarts
	case a.sup != nil:
		return a.sup.Status().Restarts
	}
	return nil
}
