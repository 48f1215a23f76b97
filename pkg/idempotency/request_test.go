package idempotency_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestFingerprint(t *testing.T) {
	body := idempotency.DefaultPolicy()
	body.FingerprintHeaders = []string{"Content-Type"}
	canon := body
	canon.CanonicalJSON = true
	headersOnly := body
	headersOnly.Fingerprint = idempotency.FingerprintHeadersOnly

	base := func() *idempotency.Request {
		return request("POST", "/v1/orders?x=1", `{"a":1,"b":[1,2]}`, "Content-Type", "application/json", "X-Trace", "t1")
	}
	with := func(change func(r *idempotency.Request)) *idempotency.Request {
		r := base()
		change(r)
		return r
	}
	reordered := with(func(r *idempotency.Request) { r.Body = []byte("{ \"b\" : [1, 2],\n\t\"a\":1 }") })

	cases := []struct {
		name  string
		p     idempotency.Policy
		r     *idempotency.Request
		equal bool
	}{
		{"identical", body, base(), true},
		{"unselected header differs", body, with(func(r *idempotency.Request) { r.Header.Set("X-Trace", "t2") }), true},
		{"selected header differs", body, with(func(r *idempotency.Request) { r.Header.Set("Content-Type", "text/plain") }), false},
		{"selected header added twice", body, with(func(r *idempotency.Request) { r.Header.Add("Content-Type", "x") }), false},
		{"method differs", body, with(func(r *idempotency.Request) { r.Method = "PATCH" }), false},
		{"path differs", body, with(func(r *idempotency.Request) { r.Path = "/v1/order?x=1" }), false},
		{"query differs", body, with(func(r *idempotency.Request) { r.Path = "/v1/orders?x=2" }), false},
		{"body differs", body, with(func(r *idempotency.Request) { r.Body = []byte(`{"a":2,"b":[1,2]}`) }), false},
		{"key order and whitespace count without canonical JSON", body, reordered, false},
		{"key order and whitespace ignored with canonical JSON", canon, reordered, true},
		{"canonical JSON still sees values", canon, with(func(r *idempotency.Request) { r.Body = []byte(`{"a":1,"b":[2,1]}`) }), false},
		{"canonical JSON keeps number literals", canon, with(func(r *idempotency.Request) { r.Body = []byte(`{"a":1.0,"b":[1,2]}`) }), false},
		{"canonical JSON: trailing bracket is not the same body", canon, with(func(r *idempotency.Request) { r.Body = []byte(`{"a":1,"b":[1,2]}}`) }), false},
		{"headers-only ignores the body", headersOnly, with(func(r *idempotency.Request) { r.Body = []byte("other") }), true},
		{"headers-only ignores a missing body", headersOnly, with(func(r *idempotency.Request) { r.Body = nil }), true},
		{"headers-only still sees the path", headersOnly, with(func(r *idempotency.Request) { r.Path = "/v2" }), false},
		{"headers-only still sees selected headers", headersOnly, with(func(r *idempotency.Request) { r.Header.Del("Content-Type") }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := idempotency.FingerprintOf(&c.p, base())
			got := idempotency.FingerprintOf(&c.p, c.r)
			require.Regexp(t, hex64, got)
			assert.Equal(t, c.equal, want == got)
		})
	}

	t.Run("modes differ from each other", func(t *testing.T) {
		assert.NotEqual(t, idempotency.FingerprintOf(&body, base()), idempotency.FingerprintOf(&headersOnly, base()))
	})
	t.Run("none", func(t *testing.T) {
		none := body
		none.Fingerprint = idempotency.FingerprintNone
		assert.Equal(t, "", idempotency.FingerprintOf(&none, base()))
	})
}

func TestCanonicalJSON(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{" {\n\"z\": {\"y\": [3, {\"b\":null,\"a\":true}]}, \"a\": \"x\"}\n", `{"a":"x","z":{"y":[3,{"a":true,"b":null}]}}`},
		{`{"n":1.50,"m":1e3,"k":-0}`, `{"k":-0,"m":1e3,"n":1.50}`},
		{`{"\u0041":1}`, `{"A":1}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{` "s" `, `"s"`},
		{`[]`, `[]`},
		// Not one JSON value: hashed as the bytes sent.
		{`not json`, `not json`},
		{`{"a":1} {"b":2}`, `{"a":1} {"b":2}`},
		{`{"a":1}}`, `{"a":1}}`},
		{`[1]]`, `[1]]`},
		{`1 ]`, `1 ]`},
		{`{"a":`, `{"a":`},
		{``, ``},
	}
	for _, c := range cases {
		got := string(idempotency.CanonicalJSON([]byte(c.in)))
		assert.Equal(t, c.want, got, "canonical(%q)", c.in)
	}
}

func TestScopeAndStorageKey(t *testing.T) {
	p := idempotency.DefaultPolicy()
	const key = "order-2026-0001-secret-ish"
	alice := request("POST", "/", "", "Authorization", "Bearer alice-token")
	bob := request("POST", "/", "", "Authorization", "Bearer bob-token")
	anon := request("POST", "/", "")

	sa, sb := idempotency.Scope(&p, alice), idempotency.Scope(&p, bob)
	assert.Regexp(t, hex64, sa)
	assert.NotEqual(t, sa, sb)
	assert.Equal(t, sa, idempotency.Scope(&p, request("POST", "/other", "body", "Authorization", "Bearer alice-token")))
	assert.Equal(t, "", idempotency.Scope(&p, anon))
	assert.NotContains(t, sa, "alice-token")

	ka, kb, kn := idempotency.StorageKey(sa, key), idempotency.StorageKey(sb, key), idempotency.StorageKey("", key)
	assert.NotEqual(t, ka, kb)
	assert.NotEqual(t, ka, kn)
	assert.Equal(t, ka, idempotency.StorageKey(sa, key), "deterministic")
	for _, k := range []string{ka, kb, kn} {
		assert.Len(t, k, 43)
		assert.Regexp(t, `^[A-Za-z0-9_-]+$`, k)
		assert.NotContains(t, k, key)
		assert.NotContains(t, k, "order")
	}
	// Length-prefixed fields: moving bytes between scope and key changes it.
	assert.NotEqual(t, idempotency.StorageKey("a", "bc"), idempotency.StorageKey("ab", "c"))

	t.Run("principal and tenant headers", func(t *testing.T) {
		p := idempotency.DefaultPolicy()
		p.ScopeHeaders = []string{"X-Tenant"}
		p.ScopePrincipal = true
		r1 := request("POST", "/", "", "X-Tenant", "t1")
		r2 := request("POST", "/", "", "X-Tenant", "t1")
		r2.Principal = "spiffe://cluster.local/ns/a/sa/b"
		r3 := request("POST", "/", "", "X-Tenant", "t2")
		s1, s2, s3 := idempotency.Scope(&p, r1), idempotency.Scope(&p, r2), idempotency.Scope(&p, r3)
		assert.NotEqual(t, s1, s2)
		assert.NotEqual(t, s1, s3)
		assert.Equal(t, s1, idempotency.Scope(&p, request("POST", "/", "", "X-Tenant", "t1", "Authorization", "ignored")))

		p.ScopePrincipal = false
		assert.Equal(t, idempotency.Scope(&p, r1), idempotency.Scope(&p, r2), "principal ignored unless ScopePrincipal")
	})
}

func TestDeriveKey(t *testing.T) {
	bodyKey := &idempotency.AutoKey{Body: true}
	fieldKey := &idempotency.AutoKey{JSONFields: []string{"order_id", "customer.id"}}
	headerKey := &idempotency.AutoKey{Headers: []string{"X-Client-Request"}}

	r := func(body string, hdr ...string) *idempotency.Request { return request("POST", "/v1/pay", body, hdr...) }
	doc := `{"order_id":7,"customer":{"id":"c1","name":"Ann"},"note":"a"}`

	k := idempotency.DeriveKey(bodyKey, r(doc))
	assert.True(t, strings.HasPrefix(k, "auto."))
	_, err := idempotency.ParseKey(k)
	assert.NoError(t, err, "a derived key is a valid key")
	assert.Equal(t, k, idempotency.DeriveKey(bodyKey, r(doc)))
	assert.NotEqual(t, k, idempotency.DeriveKey(bodyKey, r(strings.Replace(doc, `"a"`, `"b"`, 1))), "body: any byte counts")
	assert.NotEqual(t, k, idempotency.DeriveKey(bodyKey, request("PUT", "/v1/pay", doc)), "method counts")
	assert.NotEqual(t, k, idempotency.DeriveKey(bodyKey, request("POST", "/v1/refund", doc)), "path counts")

	f := idempotency.DeriveKey(fieldKey, r(doc))
	assert.NotEqual(t, k, f)
	assert.Equal(t, f, idempotency.DeriveKey(fieldKey, r(`{"note":"b","customer":{"name":"Bo","id":"c1"},"order_id":7}`)),
		"fields: other fields, order and whitespace do not count")
	assert.NotEqual(t, f, idempotency.DeriveKey(fieldKey, r(`{"order_id":8,"customer":{"id":"c1"}}`)), "top-level field counts")
	assert.NotEqual(t, f, idempotency.DeriveKey(fieldKey, r(`{"order_id":7,"customer":{"id":"c2"}}`)), "dotted field counts")
	assert.NotEqual(t, f, idempotency.DeriveKey(fieldKey, r(`{"order_id":"7","customer":{"id":"c1"}}`)), "JSON types count")

	h := idempotency.DeriveKey(headerKey, r("", "X-Client-Request", "r1"))
	assert.Equal(t, h, idempotency.DeriveKey(headerKey, r("different body", "X-Client-Request", "r1")), "body not chosen")
	assert.NotEqual(t, h, idempotency.DeriveKey(headerKey, r("", "X-Client-Request", "r2")))
}

// FuzzFingerprint feeds arbitrary requests through every fingerprint mode:
// it must never panic, must be deterministic, and canonical JSON must be
// idempotent and produce valid JSON whenever it rewrites a body.
func FuzzFingerprint(f *testing.F) {
	f.Add("POST", "/a?b=c", "k", []byte(`{"b":1,"a":[1,2,{"z":null}]}`))
	f.Add("PATCH", "/", "", []byte(" [1, 2.50, -0, 1e9] "))
	f.Add("POST", "/x", "v\x00", []byte(`{"a":"\ud800\u2028<&>"}`))
	f.Add("POST", "/", "v", []byte(`{"a":1}}`))
	f.Add("POST", "/", "v", []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, method, path, hval string, body []byte) {
		c1 := idempotency.CanonicalJSON(body)
		if c2 := idempotency.CanonicalJSON(c1); string(c2) != string(c1) {
			t.Fatalf("canonical JSON not idempotent:\n in: %q\n c1: %q\n c2: %q", body, c1, c2)
		}
		if string(c1) != string(body) && !json.Valid(c1) {
			t.Fatalf("canonical(%q) = %q is not valid JSON", body, c1)
		}
		r := &idempotency.Request{Method: method, Path: path, Body: body, Header: map[string][]string{"X-H": {hval}}}
		for _, mode := range []idempotency.FingerprintMode{idempotency.FingerprintBody, idempotency.FingerprintHeadersOnly} {
			for _, canonical := range []bool{false, true} {
				p := idempotency.DefaultPolicy()
				p.Fingerprint, p.CanonicalJSON, p.FingerprintHeaders = mode, canonical, []string{"X-H"}
				fp := idempotency.FingerprintOf(&p, r)
				if !hex64.MatchString(fp) || fp != idempotency.FingerprintOf(&p, r) {
					t.Fatalf("fingerprint %q malformed or not deterministic", fp)
				}
			}
		}
	})
}

// FuzzCanonicalJSON focuses the fuzzer on the JSON rewriting alone.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":2}`, `[{"x":[]},"\u00e9",1.0E+2]`, `"\"\\\/\b\f\n\r\t"`, `{"a":{"a":{"a":{}}}}`, `1 2`, ` null `, `{"a":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c1 := idempotency.CanonicalJSON(body)
		if c2 := idempotency.CanonicalJSON(c1); string(c2) != string(c1) {
			t.Fatalf("canonical JSON not idempotent:\n in: %q\n c1: %q\n c2: %q", body, c1, c2)
		}
		if string(c1) != string(body) && !json.Valid(body) {
			t.Fatalf("rewrote invalid JSON %q into %q", body, c1)
		}
	})
}
