package upgrade

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// State handover: the old process's counters (restart counts, say) must
// survive an upgrade, or `bulwark status` starts again from zero every
// time. The payload is opaque here; the caller encodes it. It travels in
// an unlinked temporary file passed among the inherited files: the old
// process writes it just before it starts the new one, the new one reads
// it in New. The same file goes on to later upgrades and is rewritten
// each time, so a failed upgrade leaves nothing behind. A new process
// started by a binary from before this handover finds no file and starts
// from an empty state; an older binary started by a newer one never asks
// for the file, and tableflip closes it.

// stateFile names the handover file among the inherited files.
const stateFile = "bulwark-state-handover-v1"

// maxState bounds what the new process reads: the state is a few counters.
const maxState = 1 << 20

// openState takes the handover file the old process passed, reading its
// contents, or creates a fresh one to pass on.
func (u *Upgrader) openState() error {
	if u.tf.HasParent() {
		if f, err := u.tf.Fds.File(stateFile); err == nil && f != nil {
			b, err := io.ReadAll(io.NewSectionReader(f, 0, maxState))
			if err != nil {
				f.Close()
				return fmt.Errorf("reading the old process's state: %w", err)
			}
			u.stateFile, u.received = f, b // passed on to the next upgrade too
			return nil
		}
	}
	f, err := os.CreateTemp("", "bulwark-state-*")
	if err != nil {
		return fmt.Errorf("creating the state handover file: %w", err)
	}
	// Unlinked at once: only the inherited descriptor names it.
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return fmt.Errorf("creating the state handover file: %w", err)
	}
	if err := u.tf.Fds.AddFile(stateFile, f); err != nil {
		f.Close()
		return fmt.Errorf("passing the state handover file: %w", err)
	}
	u.stateFile = f
	return nil
}

// Handover returns the state the old process handed over (see
// SetHandover); nil in a first process, or when the old process handed
// over none.
func (u *Upgrader) Handover() []byte {
	if len(u.received) == 0 {
		return nil
	}
	return append([]byte(nil), u.received...)
}

// SetHandover sets the function whose result Upgrade hands to the new
// process, which reads it with Handover. It is called once per upgrade,
// just before the new process starts. Nil hands over nothing.
func (u *Upgrader) SetHandover(state func() []byte) {
	u.stateMu.Lock()
	defer u.stateMu.Unlock()
	u.state = state
}

// writeState writes the state to hand over into the handover file.
func (u *Upgrader) writeState() error {
	u.stateMu.Lock()
	state := u.state
	u.stateMu.Unlock()
	if u.stateFile == nil {
		return errors.New("no state handover file")
	}
	var b []byte
	if state != nil {
		b = state()
	}
	if len(b) > maxState {
		return fmt.Errorf("state to hand over is %d bytes, more than %d", len(b), maxState)
	}
	if err := u.stateFile.Truncate(0); err != nil {
		return fmt.Errorf("writing the state handover file: %w", err)
	}
	if _, err := u.stateFile.WriteAt(b, 0); err != nil {
		return fmt.Errorf("writing the state handover file: %w", err)
	}
	return nil
}
