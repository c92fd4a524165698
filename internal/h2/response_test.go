package h2

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestH2ResponseControllerFindsMethods: http.ResponseController reaches
// the answer's deadlines, full duplex and flush (a method with a wrong
// signature would fall back to ErrNotSupported), and Hijack, which HTTP/2
// has no use for, is not supported.
func TestH2ResponseControllerFindsMethods(t *testing.T) {
	ts := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var got []string
		note := func(name string, v any) { got = append(got, fmt.Sprintf("%s=%v", name, v)) }
		note("SetWriteDeadline", rc.SetWriteDeadline(time.Now().Add(time.Minute)))
		note("SetReadDeadline", rc.SetReadDeadline(time.Now().Add(time.Minute)))
		note("EnableFullDuplex", rc.EnableFullDuplex())
		_, _, err := rc.Hijack()
		note("Hijack", errors.Is(err, http.ErrNotSupported))
		w.Header().Set("X-Got", strings.Join(got, " "))
		note("Flush", rc.Flush())
		io.WriteString(w, strings.Join(got[len(got)-1:], ""))
	}), nil)
	res, err := h2Client().Get("https://" + ts.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	want := "SetWriteDeadline=<nil> SetReadDeadline=<nil> EnableFullDuplex=<nil> Hijack=true"
	if got := res.Header.Get("X-Got"); got != want {
		t.Errorf("ResponseController: %s\nwant %s", got, want)
	}
	if string(b) != "Flush=<nil>" {
		t.Errorf("ResponseController: %s, want Flush=<nil>", b)
	}
}
