package observe

import (
	"encoding/json"
	"testing"
	"time"
)

// testCerts are two [acme] names as the composition root reports them: one
// served and renewed, one whose order keeps failing.
func testCerts(now time.Time) []CertStatus {
	return []CertStatus{
		{Name: "a.example", NotAfter: now.Add(60 * 24 * time.Hour), RenewAfter: now.Add(30 * 24 * time.Hour),
			LastAttempt: now.Add(-2 * time.Hour), LastRenewal: now.Add(-2 * time.Hour), NextAttempt: now.Add(30 * 24 * time.Hour)},
		{Name: "b.example", LastAttempt: now.Add(-time.Minute), NextAttempt: now.Add(90 * time.Second),
			LastError: "urn:ietf:params:acme:error:connection: refused", LastErrorAt: now.Add(-30 * time.Second)},
	}
}

// TestDashboardCertData: the document the dashboard polls carries, per
// name, the fields its certificates list reads (not_after, last_renewal,
// next_attempt, last_error, last_error_at), and zero times are left out so
// the page shows "no certificate yet" rather than year 1.
func TestDashboardCertData(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	snap := fakeSnapshot()
	s := newTestServer(t, Options{Snapshot: func() Snapshot { st := snap(); st.Certs = testCerts(now); return st }})
	var doc struct {
		Certs []map[string]any `json:"certs"`
	}
	if err := json.Unmarshal(do(t, s.Handler(), "GET", "/api/history", "").Body.Bytes(), &doc); err != nil {
		t.Fatalf("decoding /api/history: %v", err)
	}
	if len(doc.Certs) != 2 {
		t.Fatalf("/api/history certs = %v, want 2 names", doc.Certs)
	}
	a, b := doc.Certs[0], doc.Certs[1]
	for _, k := range []string{"name", "not_after", "last_renewal", "next_attempt"} {
		if _, ok := a[k]; !ok {
			t.Errorf("a.example has no %q: %v", k, a)
		}
	}
	if got, _ := time.Parse(time.RFC3339, a["not_after"].(string)); !got.Equal(now.Add(60 * 24 * time.Hour)) {
		t.Errorf("a.example not_after = %v", a["not_after"])
	}
	if _, ok := a["last_error"]; ok {
		t.Errorf("a.example has a last_error after a success: %v", a)
	}
	for _, k := range []string{"not_after", "last_renewal"} {
		if _, ok := b[k]; ok {
			t.Errorf("b.example, never obtained, has %q: %v", k, b)
		}
	}
	if b["last_error"] != "urn:ietf:params:acme:error:connection: refused" || b["last_error_at"] == nil || b["next_attempt"] == nil {
		t.Errorf("b.example = %v, want its last error, when, and the next attempt", b)
	}
}
