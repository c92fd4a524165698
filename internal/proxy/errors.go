package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"bulwark/internal/h1"
	"bulwark/internal/httperr"
)

// Kinds of upstream failure: the kind label of bulwark_upstream_errors_total.
const (
	kindConnect        = "connect"
	kindConnectTimeout = "connect_timeout"
	kindTimeout        = "timeout"
	kindReset          = "reset"
	kindOther          = "other"
)

var errorKinds = []string{kindConnect, kindConnectTimeout, kindTimeout, kindReset, kindOther}

// Reasons of the answers the proxy makes that are not the app's fault.
const (
	reasonBodyTooLarge = httperr.ReasonBodyTooLarge
	reasonClientBody   = "client_body"
	reasonClientClosed = "client_closed"
)

// kindOf names the upstream failure err is.
func kindOf(err error) string {
	var de *dialError
	var ne net.Error
	timeout := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
	switch {
	case errors.As(err, &de) && timeout:
		return kindConnectTimeout
	case errors.As(err, &de):
		return kindConnect
	case timeout:
		return kindTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, net.ErrClosed), errors.Is(err, errStaleConn):
		return kindReset
	default:
		return kindOther
	}
}

// classify maps a failure of r to Bulwark's answer and, for failures of the
// app, the metric kind ("" when the app is not to blame).
func classify(r *http.Request, err error) (he *httperr.Error, kind string) {
	if r.Context().Err() != nil {
		return &httperr.Error{Status: httperr.StatusClientClosed, Reason: reasonClientClosed, Msg: "client went away", Err: err}, ""
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he, ""
	case errors.As(err, &mbe):
		return httperr.BodyTooLarge(mbe.Limit), ""
	case errors.Is(err, errClientBody):
		return &httperr.Error{Status: http.StatusBadRequest, Reason: reasonClientBody, Msg: "the request body could not be read", Err: err}, ""
	}
	kind = kindOf(err)
	he = &httperr.Error{Reason: kind, Err: err}
	switch kind {
	case kindConnect:
		he.Status, he.Msg = http.StatusBadGateway, "the app could not be reached"
	case kindConnectTimeout:
		he.Status, he.Msg = http.StatusGatewayTimeout, "the app did not accept the connection in time"
	case kindTimeout:
		he.Status, he.Msg = http.StatusGatewayTimeout, "the app did not answer in time"
	case kindReset:
		he.Status, he.Msg = http.StatusBadGateway, "the app closed the connection before answering"
	default:
		he.Status, he.Msg = http.StatusBadGateway, "the app sent an invalid answer"
	}
	return he, kind
}

// handleError is where failures become answers, log lines and metrics, for
// relay and as ReverseProxy's ErrorHandler.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	he, kind := classify(r, err)
	p.timing(r).setReason(he.Reason)
	if kind != "" {
		p.m.errors[kind].Inc()
		p.log.Warn("upstream request failed", "kind", kind, "method", r.Method, "path", r.URL.Path, "status", he.Status, "err", err)
	} else {
		p.log.Debug("request not forwarded", "reason", he.Reason, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	httperr.Write(w, r, he)
}

// modifyResponse counts the app's answers and watches the body for a
// failure of the app mid-answer, for relay and as ReverseProxy's
// ModifyResponse. A switch to a protocol the client did not ask for is an
// error, which both answer with a 502 after closing the switched
// connection (ReverseProxy's own check, later, leaves it open).
func (p *Proxy) modifyResponse(res *http.Response) error {
	p.m.countStatus(res.StatusCode)
	if res.StatusCode == http.StatusSwitchingProtocols {
		return checkSwitch(res)
	}
	if res.Body != nil && res.Body != http.NoBody {
		res.Body = &responseBody{rc: res.Body, p: p, req: res.Request}
	}
	return nil
}

// checkSwitch fails a 101 answer whose protocol is not the one its request
// asked for.
func checkSwitch(res *http.Response) error {
	var asked string
	if res.Request != nil && h1.IsUpgrade(res.Request.Header) {
		asked = res.Request.Header.Get("Upgrade")
	}
	var got string
	if h1.IsUpgrade(res.Header) {
		got = res.Header.Get("Upgrade")
	}
	if asked == "" || !strings.EqualFold(asked, got) {
		return fmt.Errorf("the app switched protocols to %q when %q was asked for", got, asked)
	}
	return nil
}

// responseBody reports a read failure of the app's body once. The copy to
// the client then fails and the relay aborts the client's connection.
type responseBody struct {
	rc       io.ReadCloser
	p        *Proxy
	req      *http.Request
	reported bool
}

func (b *responseBody) Read(buf []byte) (int, error) {
	n, err := b.rc.Read(buf)
	if err != nil && err != io.EOF && !b.reported {
		b.reported = true
		if b.req == nil || b.req.Context().Err() == nil {
			kind := kindOf(err)
			b.p.m.errors[kind].Inc()
			path := ""
			method := ""
			if b.req != nil {
				method, path = b.req.Method, b.req.URL.Path
			}
			b.p.log.Warn("upstream answer cut off", "kind", kind, "method", method, "path", path, "err", err)
			if b.req != nil {
				timingFrom(b.req.Context()).setReason(kind)
			}
		}
	}
	return n, err
}

func (b *responseBody) Close() error { return b.rc.Close() }
