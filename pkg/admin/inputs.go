package admin

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// keyRequest is the JSON body of inspect and purge: what the client sent,
// from which the server derives the storage key as the engine did. It
// travels in a body, never in the URL, because it holds the raw key and
// credentials (an Authorization value) that access logs must not see.
type keyRequest struct {
	// Policy names the policy of the route the client called; empty means
	// default_policy.
	Policy string `json:"policy"`
	// Key is the Idempotency-Key field value as the client sent it
	// (quoted sf-string or bare token).
	Key string `json:"key"`
	// Headers are the client's request headers that the policy reads: its
	// scope_headers and, for a derived key, auto_key.headers. A header the
	// client sent twice is given as Envoy joins it: "a,b".
	Headers map[string]string `json:"headers"`
	// Principal is the mTLS peer (Envoy's source.principal) for policies
	// with scope_principal.
	Principal string `json:"principal"`
	// SourceAddress is the client address (Envoy's source.address) for
	// auto_key.source_address policies.
	SourceAddress string `json:"source_address"`
	// Method, Path and Body (or BodyBase64) are the request a derived key
	// (auto_key) was computed from, when no key was sent.
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Body       *string `json:"body"`
	BodyBase64 *string `json:"body_base64"`
	// Reason is a free-text note for the audit log (a ticket number).
	Reason string `json:"reason"`
}

const maxReason = 500

// decodeKeyRequest reads one JSON object, refusing unknown fields (a
// mistyped field would otherwise name another key and answer "absent").
func decodeKeyRequest(body io.Reader) (*keyRequest, error) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	var kr keyRequest
	if err := dec.Decode(&kr); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: the body must be a JSON object naming the key (see docs/admin.md)", errBadRequest)
		}
		return nil, fmt.Errorf("%w: body: %w", errBadRequest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: body: one JSON object expected", errBadRequest)
	}
	if len(kr.Reason) > maxReason {
		return nil, fmt.Errorf("%w: reason: at most %d bytes", errBadRequest, maxReason)
	}
	if strings.ContainsFunc(kr.Reason, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("%w: reason: no control characters", errBadRequest)
	}
	return &kr, nil
}

// policyName is how answers and logs name the default policy.
const policyName = "default_policy"

// policy resolves kr.Policy.
func (a *API) policy(name string) (string, *idempotency.Policy, error) {
	if p, ok := a.o.Policies[name]; ok {
		return name, p, nil
	}
	if name == "" || name == policyName {
		return policyName, a.o.Default, nil
	}
	return "", nil, fmt.Errorf("%w: policy %q is not configured; configured: %s (empty means default_policy)",
		errBadRequest, name, strings.Join(slices.Sorted(maps.Keys(a.o.Policies)), ", "))
}

// inputsView tells the operator which inputs made the key, so an absent
// key can be told from a mistyped header or a forgotten principal.
type inputsView struct {
	// Key is "sent" (the key header) or "derived" (auto_key).
	Key string `json:"key"`
	// Scope lists what made the caller scope ("header:Authorization",
	// "principal", "source_address"); empty means the anonymous scope.
	Scope []string `json:"scope"`
	// Ignored lists inputs given that this policy does not read for this
	// key.
	Ignored []string `json:"ignored,omitempty"`
}

// lookup is one resolved key request.
type lookup struct {
	policyName string
	policy     *idempotency.Policy
	key        string // storage key
	keyID      string
	inputs     inputsView
}

// resolve turns kr into the storage key the engine uses for that request.
func (a *API) resolve(kr *keyRequest) (*lookup, error) {
	name, p, err := a.policy(kr.Policy)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	for n, v := range kr.Headers {
		c := textproto.CanonicalMIMEHeaderKey(n)
		if _, dup := h[c]; dup {
			return nil, fmt.Errorf("%w: headers: %s given twice (names are case-insensitive)", errBadRequest, c)
		}
		h[c] = []string{v}
	}
	if kr.Key != "" {
		if sent := h.Get(p.KeyHeader); sent != "" && sent != kr.Key {
			return nil, fmt.Errorf("%w: key and headers[%q] differ; give the key once", errBadRequest, p.KeyHeader)
		}
		h.Set(p.KeyHeader, kr.Key)
	}
	r := &idempotency.Request{Method: kr.Method, Path: kr.Path, Header: h, Principal: kr.Principal, SourceAddress: kr.SourceAddress}
	switch {
	case kr.Body != nil && kr.BodyBase64 != nil:
		return nil, fmt.Errorf("%w: give body or body_base64, not both", errBadRequest)
	case kr.Body != nil:
		r.Body = []byte(*kr.Body)
	case kr.BodyBase64 != nil:
		if r.Body, err = base64.StdEncoding.DecodeString(*kr.BodyBase64); err != nil {
			return nil, fmt.Errorf("%w: body_base64: %w", errBadRequest, err)
		}
	}
	sent := h.Get(p.KeyHeader) != ""
	if !sent && p.AutoKey == nil {
		return nil, fmt.Errorf("%w: key is required: policy %s derives no keys (no auto_key)", errBadRequest, name)
	}
	if !sent && (r.Method == "" || r.Path == "") {
		return nil, fmt.Errorf("%w: without a key, give method, path (and the body or headers auto_key hashes) of the request whose key policy %s derived", errBadRequest, name)
	}
	key, derived, err := idempotency.RequestKey(p, r)
	if err != nil {
		return nil, err
	}
	in := inputsFor(p, kr, h, derived)
	if key == "" {
		return nil, fmt.Errorf("%w: policy %s does not deduplicate a derived key without a caller identity; give the scope inputs (%s)", errBadRequest, name, strings.Join(scopeInputs(p), ", "))
	}
	return &lookup{policyName: name, policy: p, key: key, keyID: idempotency.KeyID(key), inputs: in}, nil
}

// inputsFor says which of the given inputs count for p.
func inputsFor(p *idempotency.Policy, kr *keyRequest, h http.Header, derived bool) inputsView {
	in := inputsView{Key: "sent", Scope: []string{}}
	if derived {
		in.Key = "derived"
	}
	read := map[string]bool{textproto.CanonicalMIMEHeaderKey(p.KeyHeader): !derived}
	for _, n := range p.ScopeHeaders {
		c := textproto.CanonicalMIMEHeaderKey(n)
		read[c] = true
		if _, ok := h[c]; ok {
			in.Scope = append(in.Scope, "header:"+c)
		}
	}
	if derived {
		for _, n := range p.AutoKey.Headers {
			read[textproto.CanonicalMIMEHeaderKey(n)] = true
		}
	}
	for _, c := range slices.Sorted(maps.Keys(h)) {
		if !read[c] {
			in.Ignored = append(in.Ignored, "header:"+c)
		}
	}
	if kr.Principal != "" {
		if p.ScopePrincipal {
			in.Scope = append(in.Scope, "principal")
		} else {
			in.Ignored = append(in.Ignored, "principal")
		}
	}
	if kr.SourceAddress != "" {
		if derived && p.AutoKey.SourceAddress {
			in.Scope = append(in.Scope, "source_address")
		} else {
			in.Ignored = append(in.Ignored, "source_address")
		}
	}
	if !derived {
		for name, given := range map[string]bool{"method": kr.Method != "", "path": kr.Path != "", "body": kr.Body != nil || kr.BodyBase64 != nil} {
			if given {
				in.Ignored = append(in.Ignored, name)
			}
		}
		slices.Sort(in.Ignored)
	}
	return in
}

// scopeInputs names what makes a caller scope under p.
func scopeInputs(p *idempotency.Policy) []string {
	var s []string
	for _, n := range p.ScopeHeaders {
		s = append(s, "headers."+textproto.CanonicalMIMEHeaderKey(n))
	}
	if p.ScopePrincipal {
		s = append(s, "principal")
	}
	if p.AutoKey != nil && p.AutoKey.SourceAddress {
		s = append(s, "source_address")
	}
	return s
}
