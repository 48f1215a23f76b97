package extproc

import (
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// policyInfo is what the processor reads for one policy, computed once.
type policyInfo struct {
	p *idempotency.Policy
	// name is the policy's name (DefaultPolicyName for the default).
	name string
	// headers maps the lower-case names of the request headers the policy
	// reads (key, scope, fingerprint, automatic key) to their canonical
	// form: only these are copied out of Envoy's header map.
	headers map[string]string
}

func newPolicyInfo(p *idempotency.Policy) *policyInfo {
	in := &policyInfo{p: p, headers: map[string]string{}}
	add := func(names ...string) {
		for _, n := range names {
			in.headers[strings.ToLower(n)] = textproto.CanonicalMIMEHeaderKey(n)
		}
	}
	add(p.KeyHeader)
	add(p.ScopeHeaders...)
	add(p.FingerprintHeaders...)
	if p.AutoKey != nil {
		add(p.AutoKey.Headers...)
	}
	return in
}

// facts are the parts of a request the processor reads, from either shape.
type facts struct {
	method, path  string
	contentType   string
	contentLength int64 // -1 when not sent
	routeName     string
	principal     string
	// peerKnown: Envoy said whether the connection has a client
	// certificate (connection.mtls), so an empty principal is a fact.
	peerKnown bool
	address   string
	// get returns a request header's values by lower-case name.
	get func(name string) []string
}

// headerFacts reads a request_headers message. Repeated fields are joined
// with "," as Envoy's CEL request.headers[…] joins them, so a request that
// comes body first (attributes) hashes to the same scope and fingerprint.
func headerFacts(req *extprocv3.ProcessingRequest, m *corev3.HeaderMap) facts {
	f := facts{contentLength: -1}
	var hs []*corev3.HeaderValue = m.GetHeaders()
	for _, hv := range hs {
		switch hv.GetKey() {
		case ":method":
			f.method = headerValue(hv)
		case ":path":
			f.path = headerValue(hv)
		case "content-type":
			f.contentType = headerValue(hv)
		case "content-length":
			if n, err := strconv.ParseInt(headerValue(hv), 10, 64); err == nil && n >= 0 {
				f.contentLength = n
			}
		}
	}
	f.get = func(name string) []string {
		var vals []string
		for _, hv := range hs {
			if hv.GetKey() == name {
				vals = append(vals, headerValue(hv))
			}
		}
		if len(vals) > 1 {
			return []string{strings.Join(vals, ",")}
		}
		return vals
	}
	attrs := req.GetAttributes()[attrNamespace]
	f.routeName = attrString(attrs, "xds.route_name")
	f.principal, f.peerKnown = peer(attrs)
	f.address = attrString(attrs, "source.address")
	return f
}

// peer names the mTLS peer from Envoy's certificate attributes: the URI
// SAN, else the subject (marked, so a subject can never equal a URI).
func peer(attrs *structpb.Struct) (principal string, known bool) {
	_, known = attrs.GetFields()["connection.mtls"]
	if uri := attrString(attrs, "connection.uri_san_peer_certificate"); uri != "" {
		return uri, known
	}
	if subject := attrString(attrs, "connection.subject_peer_certificate"); subject != "" {
		return "subject:" + subject, known
	}
	return "", known
}

// attributeFacts reads a body-first request from its attributes. ok is
// false when the contract token is missing or wrong: Envoy was configured
// for other policies, and guessing would merge callers or weaken the
// fingerprint.
func attributeFacts(req *extprocv3.ProcessingRequest, c *Contract) (f facts, ok bool) {
	attrs := req.GetAttributes()[attrNamespace]
	if attrString(attrs, c.TokenAttribute) != c.Token {
		return facts{}, false
	}
	f = facts{
		method: attrString(attrs, "request.method"), path: attrString(attrs, "request.path"),
		contentType: attrString(attrs, headerAttribute("content-type")), contentLength: -1,
		routeName: attrString(attrs, "xds.route_name"), address: attrString(attrs, "source.address"),
	}
	f.principal, f.peerKnown = peer(attrs)
	f.get = func(name string) []string {
		v, present := attrs.GetFields()[headerAttribute(name)]
		if !present {
			return nil // Envoy omits the attribute of an absent header
		}
		return []string{valueString(v)}
	}
	return f, true
}

// request builds the engine's view of the request for policy in.
func (f facts) request(in *policyInfo) idempotency.Request {
	h := make(http.Header, len(in.headers))
	for lower, canonical := range in.headers {
		if vals := f.get(lower); len(vals) > 0 {
			h[canonical] = vals
		}
	}
	return idempotency.Request{Method: f.method, Path: f.path, Header: h, Principal: f.principal, SourceAddress: f.address}
}

func attrString(attrs *structpb.Struct, name string) string {
	v := attrs.GetFields()[name]
	if v == nil {
		return ""
	}
	return valueString(v)
}

func valueString(v *structpb.Value) string {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_NumberValue:
		return strconv.FormatFloat(k.NumberValue, 'f', -1, 64)
	case *structpb.Value_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}

func hasAttribute(req *extprocv3.ProcessingRequest, name string) bool {
	_, ok := req.GetAttributes()[attrNamespace].GetFields()[name]
	return ok
}

// attribute reads an attribute Envoy was asked to send (request_attributes
// or response_attributes); they come on the first message of a direction.
func attribute(req *extprocv3.ProcessingRequest, name string) string {
	return attrString(req.GetAttributes()[attrNamespace], name)
}
