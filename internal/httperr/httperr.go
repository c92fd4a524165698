// Package httperr writes the short answers that Bulwark itself produces
// (400, 413, 431, 502, 503, 504, ...) and maps errors to HTTP status codes in
// exactly one place, StatusFor. Packages on the request path return or pass
// an *Error; they never format error pages themselves.
package httperr

import (
	"bulwark/internal/bytesize"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// StatusClientClosed is the status recorded (never sent) when the client went
// away before an answer was ready, as nginx's 499.
const StatusClientClosed = 499

// Error is an error with the HTTP status Bulwark answers it with.
type Error struct {
	// Status is the HTTP status code sent to the client.
	Status int
	// Reason is a short machine-readable cause, such as "queue_full"; it is
	// sent in the X-Bulwark-Error header and used as a metric label, so it
	// must come from a small fixed set.
	Reason string
	// Msg is the human-readable sentence sent in the body.
	Msg string
	// RetryAfter, when positive, is sent as a Retry-After header (seconds,
	// rounded up).
	RetryAfter time.Duration
	// Err is the underlying cause, kept for logs; never sent to the client.
	Err error
}

// New returns an *Error with the given status, reason and message.
func New(status int, reason, msg string) *Error {
	return &Error{Status: status, Reason: reason, Msg: msg}
}

// ReasonBodyTooLarge is the reason of BodyTooLarge's answer.
const ReasonBodyTooLarge = "body_too_large"

// BodyTooLarge is the 413 for a request body past limit, which it names as
// the config file spells sizes ("20MiB"), so the client reads the limit the
// operator set. Its reason is "body_too_large".
func BodyTooLarge(limit int64) *Error {
	return New(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "request body larger than "+bytesize.Format(limit))
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// StatusFor reports the HTTP status an error is answered with: the status of
// an *Error in its chain; 499 when the client went away; 504 for a timeout;
// 502 for anything else (the app could not be reached or answered badly).
func StatusFor(err error) int {
	var he *Error
	var ne net.Error
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &he):
		return he.Status
	case errors.Is(err, context.Canceled):
		return StatusClientClosed
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout
	default:
		return http.StatusBadGateway
	}
}

// ReasonFor reports the short cause of err for logs and metric labels.
func ReasonFor(err error) string {
	var he *Error
	if errors.As(err, &he) && he.Reason != "" {
		return he.Reason
	}
	switch StatusFor(err) {
	case StatusClientClosed:
		return "client_closed"
	case http.StatusGatewayTimeout:
		return "timeout"
	default:
		return "upstream"
	}
}

// Write sends err to the client as Bulwark's own short answer: JSON when the
// client accepts JSON, plain text otherwise, with an X-Bulwark-Error header
// naming the reason. It sends nothing for a client that went away. Any
// header the handler set before is dropped: the answer is Bulwark's alone.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	status := StatusFor(err)
	if status == StatusClientClosed {
		return
	}
	reason := ReasonFor(err)
	msg := http.StatusText(status)
	var he *Error
	if errors.As(err, &he) {
		if he.Msg != "" {
			msg = he.Msg
		}
	}
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	if errors.As(err, &he) && he.RetryAfter > 0 {
		secs := int64((he.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	h.Set("X-Bulwark-Error", reason)
	h.Set("Cache-Control", "no-store")
	var body string
	if acceptsJSON(r) {
		h.Set("Content-Type", "application/json")
		body = `{"error":` + strconv.Quote(msg) + `,"status":` + strconv.Itoa(status) +
			`,"reason":` + strconv.Quote(reason) + `,"by":"bulwark"}` + "\n"
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		body = strconv.Itoa(status) + " " + msg + " (bulwark)\n"
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusRequestHeaderFieldsTooLarge {
		// The rest of the request may still be on the wire; it must not be
		// read as a next request.
		h.Set("Connection", "close")
	}
	w.WriteHeader(status)
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}

func acceptsJSON(r *http.Request) bool {
	if r == nil {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "application/json") || strings.Contains(v, "+json") {
			return true
		}
	}
	return false
}
