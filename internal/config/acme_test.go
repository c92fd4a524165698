package config

import (
	"strings"
	"testing"
)

// TestValidateAcme checks the [acme] rules that need no network: names,
// challenges, the CA URL, and a section that sets keys but no domain.
func TestValidateAcme(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string // "" = valid
	}{
		{"off by default", func(c *Config) {}, ""},
		{"two names, both challenges", func(c *Config) {
			c.Acme.Domains = []string{"example.com", "www.example.com"}
			c.Listen.HTTP = ":80"
		}, ""},
		{"private CA", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.CA = "https://127.0.0.1:14000/dir"
			c.Acme.CARoot = "/etc/pebble.pem"
			c.Acme.Challenges = []string{"tls-alpn-01"}
		}, ""},
		{"email without domains", func(c *Config) { c.Acme.Email = "ops@example.com" }, "acme.domains: must list at least one name"},
		{"wildcard", func(c *Config) { c.Acme.Domains = []string{"*.example.com"} }, "wildcards need the dns-01 challenge"},
		{"IP address", func(c *Config) { c.Acme.Domains = []string{"192.0.2.1"} }, "is an IP address"},
		{"upper case", func(c *Config) { c.Acme.Domains = []string{"Example.com"} }, "must be lower case"},
		{"bad label", func(c *Config) { c.Acme.Domains = []string{"-a.example.com"} }, "not a valid DNS name"},
		{"underscore", func(c *Config) { c.Acme.Domains = []string{"a_b.example.com"} }, "not a letter, digit or '-'"},
		{"duplicate", func(c *Config) { c.Acme.Domains = []string{"a.test", "a.test"} }, "listed twice"},
		{"http CA", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.CA = "http://ca.example/dir"
		}, "acme.ca: must be an https URL"},
		{"CA and staging", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.CA = "https://ca.example/dir"
			c.Acme.Staging = true
		}, "acme.staging: must be false when acme.ca is set"},
		{"dns-01", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.Challenges = []string{"dns-01"}
		}, `must be "http-01" or "tls-alpn-01", got "dns-01"`},
		{"no challenge", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.Challenges = []string{}
		}, "acme.challenges: must list at least one"},
		{"http-01 without listen.http", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.Challenges = []string{"http-01"}
		}, "http-01 is solved on listen.http, which is off"},
		{"bad email", func(c *Config) {
			c.Acme.Domains = []string{"a.test"}
			c.Acme.Email = "ops"
		}, "acme.email: must be an email address"},
	}
	for _, tt := range tests {
		c := Default()
		tt.edit(c)
		err := c.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// TestAcmeHTTP01WarnsWithoutListener checks that the default challenges
// without a plain listener are accepted with a warning: tls-alpn-01 still
// works.
func TestAcmeHTTP01WarnsWithoutListener(t *testing.T) {
	c := Default()
	c.Acme.Domains = []string{"a.test"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "http-01 is not offered") {
		t.Errorf("warnings = %q, want one about http-01", c.Warnings)
	}
}

// TestAcmeFromFile loads an [acme] section, list keys included, and its
// environment overrides.
func TestAcmeFromFile(t *testing.T) {
	path := writeConfig(t, "[listen]\nhttp = \":80\"\n[acme]\ndomains = [\"example.com\"]\nchallenges = [\"http-01\"]\n")
	o := machine("box1500mib")
	o.Path = path
	o.Environ = []string{"BULWARK_ACME_EMAIL=ops@example.com"}
	c, err := Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Acme.Enabled() || c.Acme.Domains[0] != "example.com" || len(c.Acme.Challenges) != 1 || c.Acme.Email != "ops@example.com" {
		t.Errorf("Acme = %+v", c.Acme)
	}
	if c.Sources["acme.email"] != SourceEnv || c.Sources["acme.domains"] != SourceFile {
		t.Errorf("sources: email %q, domains %q", c.Sources["acme.email"], c.Sources["acme.domains"])
	}
}
