package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// validateAcme checks [acme] without the network or the file system
// (whether ca_root holds PEM certificates is for the acme package to say).
// An [acme] section that sets anything beyond the defaults must name at
// least one domain.
func (c *Config) validateAcme(v *validator) {
	a := c.Acme
	if !a.Enabled() {
		if a.Email != "" || a.CA != "" || a.Staging || a.CARoot != "" || a.Storage != "" {
			v.fail("acme.domains", errors.New(`must list at least one name, such as ["example.com", "www.example.com"], when [acme] sets anything else`))
		}
		return
	}
	for i, d := range a.Domains {
		if err := validACMEName(d); err != nil {
			v.fail(fmt.Sprintf("acme.domains[%d]", i), err)
		} else if slices.Contains(a.Domains[:i], d) {
			v.fail(fmt.Sprintf("acme.domains[%d]", i), fmt.Errorf("%q is listed twice", d))
		}
	}
	if a.Email != "" && !strings.Contains(a.Email, "@") {
		v.fail("acme.email", fmt.Errorf("must be an email address such as \"ops@example.com\", got %q", a.Email))
	}
	if a.CA != "" {
		u, err := url.Parse(a.CA)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			v.fail("acme.ca", fmt.Errorf(`must be an https URL of an ACME directory, such as "https://acme-v02.api.letsencrypt.org/directory", got %q`, a.CA))
		}
		if a.Staging {
			v.failNear("acme.staging", "acme.ca", errors.New("must be false when acme.ca is set: staging picks Let's Encrypt's staging directory"))
		}
	}
	if len(a.Challenges) == 0 {
		v.fail("acme.challenges", errors.New(`must list at least one of "http-01", "tls-alpn-01"`))
	}
	for i, ch := range a.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			v.fail(fmt.Sprintf("acme.challenges[%d]", i), fmt.Errorf(`must be "http-01" or "tls-alpn-01", got %q (dns-01 is not supported)`, ch))
		}
	}
	if c.Listen.HTTP == "" && slices.Contains(a.Challenges, ChallengeHTTP01) {
		if !slices.Contains(a.Challenges, ChallengeTLSALPN01) {
			v.failNear("acme.challenges", "listen.http", errors.New(`http-01 is solved on listen.http, which is off: set listen.http (such as ":80") or use "tls-alpn-01"`))
		} else {
			c.warn("acme: http-01 is not offered because listen.http is off; tls-alpn-01 is")
		}
	}
}

// validACMEName reports why d cannot be a name in an ACME order solved by
// http-01 or tls-alpn-01: it must be a lower-case DNS name, not an address
// and not a wildcard (wildcards need dns-01).
func validACMEName(d string) error {
	switch {
	case d == "":
		return errors.New("must be a DNS name such as \"example.com\", got \"\"")
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("%q is a wildcard: wildcards need the dns-01 challenge, which Bulwark does not solve; list each name", d)
	case strings.Trim(d, "[]") != d || isIP(d):
		return fmt.Errorf("%q is an IP address: give a DNS name", d)
	case d != strings.ToLower(d):
		return fmt.Errorf("%q must be lower case", d)
	case len(d) > 253:
		return fmt.Errorf("%q is longer than 253 characters", d)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is not a valid DNS name: each dot-separated label is 1 to 63 letters, digits or '-', not starting or ending with '-'", d)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q is not a valid DNS name: %q is not a letter, digit or '-' (write internationalized names in punycode, xn--...)", d, r)
			}
		}
	}
	return nil
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}
