package extproc

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Contract is what Envoy's ext_proc filter must send for a body-first
// stream (request_header_mode SKIP, request_body_mode BUFFERED), where the
// request's headers never reach the server and the facts the policies read
// come as CEL request_attributes on the body message instead.
//
// The attribute list depends on the policies (key, scope and fingerprint
// headers). An Envoy config built for other policies would silently merge
// callers or skip part of the fingerprint, so the list ends with one
// constant CEL string literal, Token, whose value is a hash of the list:
// the server checks it on every body-first stream and fails closed when it
// is missing or different. Generate Envoy configs from RequestAttributes,
// never by hand.
type Contract struct {
	// Attributes are the request_attributes of the ext_proc filter, in
	// order; the last one is TokenAttribute.
	Attributes []string
	// Token is the value Envoy sends for TokenAttribute.
	Token string
	// TokenAttribute is the CEL expression (a string literal) that makes
	// Envoy send Token; it is also the attribute's key in the message.
	TokenAttribute string
	// Headers are the lower-cased request header names sent as
	// request.headers['…'] attributes.
	Headers []string
}

// tokenPrefix starts every contract token; the version changes when the
// meaning of the attributes changes.
const tokenPrefix = "gopotency-contract-v1-"

// headerAttribute is the CEL expression for one request header.
func headerAttribute(name string) string { return "request.headers['" + name + "']" }

// NewContract derives the contract from the default and named policies.
// byRoute adds xds.route_name, which Options.RoutePolicies reads (Envoy
// Gateway cannot set per-route gRPC metadata).
func NewContract(def *idempotency.Policy, named map[string]*idempotency.Policy, byRoute bool) Contract {
	headers := []string{"content-type"}
	principal, address := false, false
	add := func(p *idempotency.Policy) {
		headers = append(headers, strings.ToLower(p.KeyHeader))
		for _, h := range p.ScopeHeaders {
			headers = append(headers, strings.ToLower(h))
		}
		for _, h := range p.FingerprintHeaders {
			headers = append(headers, strings.ToLower(h))
		}
		if p.AutoKey != nil {
			for _, h := range p.AutoKey.Headers {
				headers = append(headers, strings.ToLower(h))
			}
			address = address || p.AutoKey.SourceAddress
		}
		principal = principal || p.ScopePrincipal
	}
	add(def)
	for _, p := range named {
		add(p)
	}
	slices.Sort(headers)
	headers = slices.Compact(headers)

	attrs := []string{"request.method", "request.path"}
	for _, h := range headers {
		attrs = append(attrs, headerAttribute(h))
	}
	if principal {
		attrs = append(attrs, peerAttributes...)
	}
	if address {
		attrs = append(attrs, "source.address")
	}
	if byRoute {
		attrs = append(attrs, "xds.route_name")
	}
	sum := sha256.Sum256([]byte(strings.Join(attrs, "\n")))
	token := tokenPrefix + hex.EncodeToString(sum[:8])
	tokenAttr := "'" + token + "'"
	return Contract{Attributes: append(attrs, tokenAttr), Token: token, TokenAttribute: tokenAttr, Headers: headers}
}

// peerAttributes name the mTLS peer for policies with scope_principal:
// Envoy has no single "principal" attribute; the URI SAN (a SPIFFE id under
// Istio) is the peer's name, the subject its fallback, and connection.mtls
// tells a connection without a client certificate from a filter that was
// not asked to say.
var peerAttributes = []string{"connection.mtls", "connection.uri_san_peer_certificate", "connection.subject_peer_certificate"}

// ResponseAttributes are the response_attributes every configuration
// sends: they tell responses Envoy made itself from the upstream's.
var ResponseAttributes = []string{"response.code_details"}
