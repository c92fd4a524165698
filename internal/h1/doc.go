// Package h1 is the HTTP/1.1 wire format that Bulwark's server (package
// front) and its upstream client (package proxy) share, so each rule is
// written once.
//
// Validation (valid.go): tokens and methods (RFC 9110 5.6.2, 9.1), field
// names and values (RFC 9110 5.1, 5.5) and Host (RFC 9110 7.2), checked
// byte for byte as net/http checks them.
package h1
