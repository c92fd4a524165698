package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"bulwark/internal/observe"
)

func TestReloadAndRestartApp(t *testing.T) {
	var reloads, restarts int
	_, addr := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(1, true),
		OnReload:     func() error { reloads++; return nil },
		OnRestartApp: func() error { restarts++; return nil }})
	_, noApp := startObserve(t, observe.Options{Token: testToken, Snapshot: adminSnapshot(0, false),
		OnReload: func() error { return errors.New("/etc/bulwark.toml:3: listen.https: bad address") }})

	tests := []struct {
		name    string
		run     func(context.Context, []string, io.Writer, io.Writer) error
		args    []string
		wantOut string
		wantErr string
	}{
		{"reload", runReload, []string{"--admin", addr, "--token", testToken}, "configuration reloaded", ""},
		{"restart-app", runRestartApp, []string{"--admin", addr, "--token", testToken}, "app restarted", ""},
		{"reload without token", runReload, []string{"--admin", addr}, "", "needs a token"},
		{"restart-app wrong token", runRestartApp, []string{"--admin", addr, "--token", "x"}, "", "refused the token"},
		{"reload fails", runReload, []string{"--admin", noApp, "--token", testToken}, "",
			"answered 500: reload failed: /etc/bulwark.toml:3: listen.https: bad address"},
		{"restart-app without app", runRestartApp, []string{"--admin", noApp, "--token", testToken}, "",
			"answered 409: no app supervised"},
	}
	isolateAdminEnv(t)
	for _, tt := range tests {
		var out bytes.Buffer
		err := tt.run(t.Context(), tt.args, &out, &out)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.wantErr)
		case !strings.Contains(out.String(), tt.wantOut):
			t.Errorf("%s: printed %q, want %q", tt.name, out.String(), tt.wantOut)
		}
	}
	if reloads != 1 || restarts != 1 {
		t.Errorf("server saw %d reloads and %d restarts, want 1 each", reloads, restarts)
	}
}
