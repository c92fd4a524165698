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
