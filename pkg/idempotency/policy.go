package idempotency

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FingerprintMode says which parts of a request bind it to its key.
type FingerprintMode string

const (
	// FingerprintBody hashes method, path with query, selected headers and
	// the body. It is the default.
	FingerprintBody FingerprintMode = "body"
	// FingerprintHeadersOnly hashes method, path with query and selected
	// headers; the body is never read.
	FingerprintHeadersOnly FingerprintMode = "headers-only"
	// FingerprintNone binds nothing: any request reusing a key replays.
	FingerprintNone FingerprintMode = "none"
)

// Defaults of a Policy; DefaultPolicy returns them together.
const (
	defaultKeyHeader       = "Idempotency-Key"
	defaultRetention       = 24 * time.Hour
	defaultLease           = 30 * time.Second
	defaultMaxRequestBody  = 1 << 20
	defaultMaxResponseBody = 1 << 20
	defaultRetryAfter      = time.Second
)

// UnknownOutcome says what happens to a key whose request was forwarded
// and never answered (client gone, upstream reset, timeout, a crashed
// server whose lease ran out).
type UnknownOutcome string

const (
	// UnknownRecord keeps the key as outcome-unknown for the retention:
	// retries are told so and never run. It is the default: the request
	// may have run, and running it again could charge twice.
	UnknownRecord UnknownOutcome = "record"
	// UnknownRetryAfterLease lets a retry run once the lease runs out,
	// for upstreams that roll back work cut off mid-request (a database
	// transaction bound to the request). A response whose head arrived is
	// still recorded (response-incomplete): that upstream did run.
	UnknownRetryAfterLease UnknownOutcome = "retry_after_lease"
)

// Policy is what one route asks of the engine. The zero value is not
// usable; start from DefaultPolicy and change fields, then call Validate.
// Each field's yaml tag is its key in the server's configuration file
// (pkg/config decodes a policy section onto a copy of the policy it
// inherits); the tags are the only place those keys are defined.
type Policy struct {
	// Methods the policy applies to; other methods pass through.
	Methods []string `yaml:"methods"`
	// KeyHeader names the request header carrying the key.
	KeyHeader string `yaml:"key_header"`
	// KeyRequired makes a missing key a 400 instead of a pass-through.
	KeyRequired bool `yaml:"key_required"`
	// Retention is how long a completed record replays.
	Retention time.Duration `yaml:"retention"`
	// Lease is how long an in-flight claim lives without renewal.
	Lease time.Duration `yaml:"lease"`
	// Fingerprint selects what binds a request to its key.
	Fingerprint FingerprintMode `yaml:"fingerprint"`
	// FingerprintHeaders are request headers included in the fingerprint.
	FingerprintHeaders []string `yaml:"fingerprint_headers"`
	// CanonicalJSON makes JSON bodies hash by value, so key order and
	// whitespace do not count. Non-JSON bodies hash as bytes.
	CanonicalJSON bool `yaml:"canonical_json"`
	// ScopeHeaders name request headers whose values, hashed, make the
	// caller scope. A caller never sees another scope's records.
	ScopeHeaders []string `yaml:"scope_headers"`
	// ScopePrincipal adds Request.Principal (for example the mTLS peer) to
	// the scope.
	ScopePrincipal bool `yaml:"scope_principal"`
	// DoNotStore lists response statuses that are not recorded; the key is
	// released so a retry may run.
	DoNotStore StatusSet `yaml:"do_not_store"`
	// ReplayDenylist headers are never replayed (hop-by-hop headers never
	// are, whatever the lists say).
	ReplayDenylist []string `yaml:"replay_denylist"`
	// ReplayAllowlist, when set, replays only these headers.
	ReplayAllowlist []string `yaml:"replay_allowlist"`
	// MaxRequestBody caps the body read for fingerprinting; larger requests
	// get 413.
	MaxRequestBody int64 `yaml:"max_request_body"`
	// MaxResponseBody caps a stored body; larger responses store a
	// tombstone.
	MaxResponseBody int64 `yaml:"max_response_body"`
	// WaitInFlight, when positive, makes a duplicate of an in-flight
	// request wait up to this long for the first to finish and replay it,
	// instead of getting 409 at once.
	WaitInFlight time.Duration `yaml:"wait_in_flight"`
	// FailOpen lets requests through without idempotency when the store is
	// unreachable. Off by default: fail closed with 503.
	FailOpen bool `yaml:"fail_open"`
	// AutoKey, when set, derives a key from request content when the
	// client sends none.
	AutoKey *AutoKey `yaml:"auto_key"`
	// RetryAfter is the Retry-After sent with 409 request-in-progress: a
	// hint for polling, not the remaining lease.
	RetryAfter time.Duration `yaml:"retry_after"`
	// UnknownOutcome: what a forwarded request that never got a complete
	// answer leaves behind (UnknownRecord by default).
	UnknownOutcome UnknownOutcome `yaml:"unknown_outcome"`
}

// AutoKey chooses the request parts hashed into a derived key. Method and
// path are always included.
type AutoKey struct {
	Headers []string `yaml:"headers"`
	Body    bool     `yaml:"body"`
	// JSONFields are top-level or dotted paths (a.b.c) read from a JSON
	// body; when set, only these fields are hashed, not the whole body.
	JSONFields []string `yaml:"json_fields"`
	// SourceAddress adds the client address (Request.SourceAddress) to the
	// scope of derived keys, so anonymous callers sending the same content
	// never share a record.
	SourceAddress bool `yaml:"source_address"`
}

// DefaultPolicy returns the defaults of the design brief: POST and PATCH,
// key optional, scope from Authorization, fingerprint over the body, 24h
// retention, 30s lease, 5xx/408/429 not stored.
func DefaultPolicy() Policy {
	return Policy{
		Methods:         []string{http.MethodPost, http.MethodPatch},
		KeyHeader:       defaultKeyHeader,
		Retention:       defaultRetention,
		Lease:           defaultLease,
		Fingerprint:     FingerprintBody,
		ScopeHeaders:    []string{"Authorization"},
		DoNotStore:      StatusSet{"5xx", "408", "429"},
		ReplayDenylist:  []string{"Set-Cookie", "Set-Cookie2", "WWW-Authenticate", "Proxy-Authenticate", "Authorization", "Proxy-Authorization", "Date", "Server", "X-Envoy-Upstream-Service-Time"},
		MaxRequestBody:  defaultMaxRequestBody,
		MaxResponseBody: defaultMaxResponseBody,
		RetryAfter:      defaultRetryAfter,
		UnknownOutcome:  UnknownRecord,
	}
}

// Validate reports every problem with p at once.
func (p *Policy) Validate() error {
	var errs []error
	if len(p.Methods) == 0 {
		errs = append(errs, errors.New("methods: at least one method is required"))
	}
	for _, m := range p.Methods {
		if m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t") {
			errs = append(errs, fmt.Errorf("methods: %q is not an upper-case HTTP method", m))
		}
	}
	if !validHeaderName(p.KeyHeader) {
		errs = append(errs, fmt.Errorf("key_header: %q is not a valid header name", p.KeyHeader))
	}
	if p.Retention <= 0 {
		errs = append(errs, errors.New("retention: must be positive"))
	}
	if p.Lease < 10*time.Millisecond {
		errs = append(errs, errors.New("lease: must be at least 10ms"))
	}
	switch p.Fingerprint {
	case FingerprintBody, FingerprintHeadersOnly, FingerprintNone:
	default:
		errs = append(errs, fmt.Errorf("fingerprint: %q is not one of body, headers-only, none", p.Fingerprint))
	}
	for _, lists := range [][]string{p.FingerprintHeaders, p.ScopeHeaders, p.ReplayDenylist, p.ReplayAllowlist} {
		for _, h := range lists {
			if !validHeaderName(h) {
				errs = append(errs, fmt.Errorf("header %q is not a valid header name", h))
			}
		}
	}
	if p.MaxRequestBody <= 0 || p.MaxResponseBody <= 0 {
		errs = append(errs, errors.New("max_request_body and max_response_body: must be positive"))
	}
	if p.WaitInFlight < 0 {
		errs = append(errs, errors.New("wait_in_flight: must not be negative"))
	}
	if p.Retention > 0 && p.Lease > 0 && p.Retention < p.Lease {
		errs = append(errs, errors.New("retention: must be at least the lease"))
	}
	if p.AutoKey != nil && len(p.AutoKey.Headers) == 0 && !p.AutoKey.Body && len(p.AutoKey.JSONFields) == 0 {
		errs = append(errs, errors.New("auto_key: choose headers, body or json_fields"))
	}
	if p.AutoKey != nil && len(p.ScopeHeaders) == 0 && !p.ScopePrincipal && !p.AutoKey.SourceAddress {
		errs = append(errs, errors.New("auto_key: derived keys need a caller identity, or anonymous callers sending the same content would get each other's responses: set scope_headers, scope_principal or auto_key.source_address"))
	}
	if p.RetryAfter < time.Second {
		errs = append(errs, errors.New("retry_after: must be at least 1s (Retry-After counts whole seconds)"))
	}
	for _, it := range p.DoNotStore {
		if _, _, ok := parseStatus(it); !ok {
			errs = append(errs, fmt.Errorf("do_not_store: %q is neither a code (100-599) nor a class (1xx-5xx)", it))
		}
	}
	switch p.UnknownOutcome {
	case UnknownRecord, UnknownRetryAfterLease:
	default:
		errs = append(errs, fmt.Errorf("unknown_outcome: %q is not record or retry_after_lease", p.UnknownOutcome))
	}
	return errors.Join(errs...)
}

// Applies reports whether method is one the policy guards.
func (p *Policy) Applies(method string) bool { return slices.Contains(p.Methods, method) }

// NeedsBody reports whether Begin needs r's body: to fingerprint it, or to
// derive a key from it when r carries none. Transports ask it with the
// headers only, to avoid buffering bodies they do not need.
func (p *Policy) NeedsBody(r *Request) bool {
	if p.Fingerprint == FingerprintBody {
		return true
	}
	return !p.hasKey(r) && p.AutoKey != nil && (p.AutoKey.Body || len(p.AutoKey.JSONFields) > 0)
}

func (p *Policy) hasKey(r *Request) bool { return len(r.Header.Values(p.KeyHeader)) > 0 }

// Stores reports whether a response with status is recorded.
func (p *Policy) Stores(status int) bool { return !p.DoNotStore.Contains(status) }

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// StatusSet is a set of HTTP statuses written as codes ("408") or classes
// ("5xx"), as in the configuration file; Policy.Validate checks each item.
type StatusSet []string

// Contains reports whether status is in the set.
func (s StatusSet) Contains(status int) bool {
	for _, it := range s {
		if n, class, ok := parseStatus(it); ok && (n == status || class && n == status/100) {
			return true
		}
	}
	return false
}

// parseStatus reads one item: a code (100-599), or a class (1xx-5xx) as
// its digit.
func parseStatus(it string) (n int, class, ok bool) {
	t := strings.ToLower(strings.TrimSpace(it))
	if len(t) == 3 && strings.HasSuffix(t, "xx") && t[0] >= '1' && t[0] <= '5' {
		return int(t[0] - '0'), true, true
	}
	n, err := strconv.Atoi(t)
	return n, false, err == nil && n >= 100 && n <= 599
}
