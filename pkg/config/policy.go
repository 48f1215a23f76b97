package config

import (
	"errors"
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// duration is a YAML duration written as Go does ("30s", "24h").
type duration time.Duration

// badDuration marks a value that did not parse. It is reported once by
// the decoder and otherwise treated as unset, so it causes no follow-on
// errors ("lease: must be at least 10ms").
const badDuration = duration(math.MinInt64)

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A TypeError lets the decoder go on and report every bad value.
		*d = badDuration
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration like 30s or 24h", n.Line, n.Value)}}
	}
	*d = duration(v)
	return nil
}

func (d *duration) or(def time.Duration) time.Duration {
	if d == nil || *d == badDuration {
		return def
	}
	return time.Duration(*d)
}

// policyFile is a policy as written in YAML; unset fields inherit.
type policyFile struct {
	Methods            []string  `yaml:"methods"`
	KeyHeader          string    `yaml:"key_header"`
	KeyRequired        *bool     `yaml:"key_required"`
	Retention          *duration `yaml:"retention"`
	Lease              *duration `yaml:"lease"`
	Fingerprint        string    `yaml:"fingerprint"`
	FingerprintHeaders []string  `yaml:"fingerprint_headers"`
	CanonicalJSON      *bool     `yaml:"canonical_json"`
	ScopeHeaders       []string  `yaml:"scope_headers"`
	ScopePrincipal     *bool     `yaml:"scope_principal"`
	DoNotStore         []string  `yaml:"do_not_store"`
	ReplayDenylist     []string  `yaml:"replay_denylist"`
	ReplayAllowlist    []string  `yaml:"replay_allowlist"`
	MaxRequestBody     *int64    `yaml:"max_request_body"`
	MaxResponseBody    *int64    `yaml:"max_response_body"`
	WaitInFlight       *duration `yaml:"wait_in_flight"`
	FailOpen           *bool     `yaml:"fail_open"`
	RetryAfter         *duration `yaml:"retry_after"`
	UnknownOutcome     string    `yaml:"unknown_outcome"`
	AutoKey            *struct {
		Headers       []string `yaml:"headers"`
		Body          bool     `yaml:"body"`
		JSONFields    []string `yaml:"json_fields"`
		SourceAddress bool     `yaml:"source_address"`
	} `yaml:"auto_key"`
}

// apply overrides p with the fields set in f.
func (f *policyFile) apply(p *idempotency.Policy) error {
	set := func(dst *[]string, src []string) {
		if src != nil {
			*dst = append([]string(nil), src...)
		}
	}
	set(&p.Methods, f.Methods)
	set(&p.FingerprintHeaders, f.FingerprintHeaders)
	set(&p.ScopeHeaders, f.ScopeHeaders)
	set(&p.ReplayDenylist, f.ReplayDenylist)
	set(&p.ReplayAllowlist, f.ReplayAllowlist)
	if f.KeyHeader != "" {
		p.KeyHeader = f.KeyHeader
	}
	if f.Fingerprint != "" {
		p.Fingerprint = idempotency.FingerprintMode(f.Fingerprint)
	}
	for dst, src := range map[*bool]*bool{&p.KeyRequired: f.KeyRequired, &p.CanonicalJSON: f.CanonicalJSON, &p.ScopePrincipal: f.ScopePrincipal, &p.FailOpen: f.FailOpen} {
		if src != nil {
			*dst = *src
		}
	}
	if f.UnknownOutcome != "" {
		p.UnknownOutcome = idempotency.UnknownOutcome(f.UnknownOutcome)
	}
	for dst, src := range map[*time.Duration]*duration{&p.Retention: f.Retention, &p.Lease: f.Lease, &p.WaitInFlight: f.WaitInFlight, &p.RetryAfter: f.RetryAfter} {
		*dst = src.or(*dst)
	}
	for dst, src := range map[*int64]*int64{&p.MaxRequestBody: f.MaxRequestBody, &p.MaxResponseBody: f.MaxResponseBody} {
		if src != nil {
			*dst = *src
		}
	}
	if f.AutoKey != nil {
		p.AutoKey = &idempotency.AutoKey{Headers: f.AutoKey.Headers, Body: f.AutoKey.Body, JSONFields: f.AutoKey.JSONFields, SourceAddress: f.AutoKey.SourceAddress}
	}
	if f.DoNotStore != nil {
		s, err := idempotency.ParseStatusSet(f.DoNotStore...)
		if err != nil {
			return errors.New("do_not_store: " + err.Error())
		}
		p.DoNotStore = s
	}
	return nil
}
