package httphdr

import (
	"net/http"
	"slices"
	"testing"
)

func TestIsEventStream(t *testing.T) {
	tests := map[string]bool{
		"text/event-stream":                  true,
		" Text/Event-Stream ; charset=utf-8": true,
		"text/event-streams":                 false,
		"text/html":                          false,
		"":                                   false,
	}
	for ct, want := range tests {
		if got := IsEventStream(ct); got != want {
			t.Errorf("IsEventStream(%q) = %v; want %v", ct, got, want)
		}
	}
}

func TestAddVary(t *testing.T) {
	tests := []struct {
		have []string
		add  string
		want []string
	}{
		{nil, "Origin", []string{"Origin"}},
		{[]string{"Accept-Encoding"}, "Origin", []string{"Accept-Encoding", "Origin"}},
		{[]string{"Cookie, origin"}, "Origin", []string{"Cookie, origin"}},
		{[]string{"*"}, "Origin", []string{"*"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.have {
			h.Add("Vary", v)
		}
		AddVary(h, tt.add)
		if got := h.Values("Vary"); !slices.Equal(got, tt.want) {
			t.Errorf("AddVary(%q, %q) = %q; want %q", tt.have, tt.add, got, tt.want)
		}
	}
}

func TestReserved(t *testing.T) {
	for name, want := range map[string]bool{
		"X_Real_IP": true, "x_forwarded_for": true, "X-Forwarded_Host": true, "FORWARDED": true,
		"Transfer_Encoding": true, "Content_Length": true, "Proxy_Connection": true,
		"X-Real-IP": true, "Host": true, "Upgrade": true, "HTTP2-Settings": true,
		"X_Custom": false, "Cookie": false, "X_Real_IPs": false, "X_Forwarded": false,
	} {
		if got := Reserved(name); got != want {
			t.Errorf("Reserved(%q) = %v, want %v", name, got, want)
		}
	}
}
