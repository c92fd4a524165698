package httperr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStatusFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 200},
		{"error", New(503, "queue_full", "busy"), 503},
		{"wrapped error", fmt.Errorf("admit: %w", New(413, "body_too_large", "too big")), 413},
		{"client gone", context.Canceled, StatusClientClosed},
		{"deadline", context.DeadlineExceeded, 504},
		{"net timeout", os.ErrDeadlineExceeded, 504},
		{"anything else", errors.New("connection refused"), 502},
	}
	for _, tt := range tests {
		if got := StatusFor(tt.err); got != tt.want {
			t.Errorf("StatusFor(%s) = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("X-From-App", "1") // dropped: the answer is Bulwark's alone
	e := &Error{Status: 503, Reason: "queue_full", Msg: "too many requests waiting", RetryAfter: 1500 * time.Millisecond}
	Write(rec, httptest.NewRequest("GET", "/", nil), e)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" || rec.Header().Get("X-Bulwark-Error") != "queue_full" {
		t.Errorf("got %d Retry-After=%q reason=%q", rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("X-Bulwark-Error"))
	}
	if rec.Header().Get("X-From-App") != "" {
		t.Errorf("a header set before Write was kept")
	}
	if got := rec.Body.String(); got != "503 too many requests waiting (bulwark)\n" {
		t.Errorf("body %q", got)
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/", nil)
	r.Header.Set("Accept", "application/json")
	Write(rec, r, New(413, "body_too_large", `body over "max_body"`))
	var got struct {
		Error, Reason, By string
		Status            int
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %q", rec.Body.String())
	}
	if got.Status != 413 || got.Reason != "body_too_large" || got.By != "bulwark" || !strings.Contains(got.Error, "max_body") {
		t.Errorf("got %+v", got)
	}
	if rec.Header().Get("Connection") != "close" {
		t.Errorf("413 without Connection: close: the rest of the body would be read as a request")
	}
}

func TestWriteNothingForAGoneClient(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("GET", "/", nil), context.Canceled)
	if rec.Body.Len() != 0 || rec.Header().Get("X-Bulwark-Error") != "" {
		t.Errorf("wrote %q to a client that went away", rec.Body.String())
	}
}

func TestWriteHeadHasNoBody(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, httptest.NewRequest("HEAD", "/", nil), errors.New("refused"))
	if rec.Code != http.StatusBadGateway || rec.Body.Len() != 0 {
		t.Errorf("HEAD: got %d with %d body bytes", rec.Code, rec.Body.Len())
	}
}

func TestBodyTooLargeNamesTheLimitAsConfigured(t *testing.T) {
	e := BodyTooLarge(20 << 20)
	if e.Status != http.StatusRequestEntityTooLarge || e.Reason != ReasonBodyTooLarge {
		t.Errorf("BodyTooLarge = %d %q, want 413 %q", e.Status, e.Reason, ReasonBodyTooLarge)
	}
	if want := "request body larger than 20MiB"; e.Msg != want {
		t.Errorf("message = %q, want %q", e.Msg, want)
	}
}
