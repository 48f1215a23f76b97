package idempotency

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/http"
	"strings"
)

// Request is the transport-neutral view of an HTTP request that the engine
// needs. Transports fill it from net/http, Gin, Echo or ext_proc messages.
type Request struct {
	Method string
	// Path is the request target: path plus query, as sent.
	Path   string
	Header http.Header
	// Body is nil when the policy does not need it (see Policy.NeedsBody).
	Body []byte
	// Principal is an authenticated identity the transport vouches for,
	// such as an mTLS peer; used when Policy.ScopePrincipal is set.
	Principal string
	// SourceAddress is the client's address ("ip" or "ip:port"; the port
	// is ignored), used to scope automatic keys when
	// AutoKey.SourceAddress is set.
	SourceAddress string

	// checkedKey is the key Precheck parsed from the header value
	// checkedHeader, so Begin does not parse it twice.
	checkedKey, checkedHeader string
}

// fieldHash writes length-prefixed fields so no two field lists collide.
// Small fields gather in one buffer before reaching the hash, so hashing a
// request costs a few allocations, not one per field.
type fieldHash struct {
	h   hash.Hash
	buf []byte
}

func newFieldHash(domain string) *fieldHash {
	f := &fieldHash{h: sha256.New(), buf: make([]byte, 0, 256)}
	f.add(domain)
	return f
}

func (f *fieldHash) add(s string) {
	f.buf = binary.BigEndian.AppendUint64(f.buf, uint64(len(s)))
	f.buf = append(f.buf, s...)
}

func (f *fieldHash) addBytes(b []byte) {
	f.buf = binary.BigEndian.AppendUint64(f.buf, uint64(len(b)))
	if len(b) > cap(f.buf)-len(f.buf) { // would grow the buffer: straight to the hash, no copy
		f.flush()
		f.h.Write(b)
		return
	}
	f.buf = append(f.buf, b...)
}

func (f *fieldHash) flush() {
	f.h.Write(f.buf)
	f.buf = f.buf[:0]
}

func (f *fieldHash) addHeaders(h http.Header, names []string) {
	for _, name := range names {
		f.add(strings.ToLower(name))
		f.add(strings.Join(h.Values(name), "\x00"))
	}
}

func (f *fieldHash) sum() []byte {
	f.flush()
	return f.h.Sum(nil)
}

// fingerprint returns the hex SHA-256 binding r to its key under p, or ""
// when p.Fingerprint is FingerprintNone.
func fingerprint(p *Policy, r *Request) string {
	if p.Fingerprint == FingerprintNone {
		return ""
	}
	f := newFieldHash("gopotency/fingerprint/v1")
	f.add(r.Method)
	f.add(r.Path)
	f.addHeaders(r.Header, p.FingerprintHeaders)
	if p.Fingerprint == FingerprintBody {
		body := r.Body
		if p.CanonicalJSON {
			body = canonicalJSON(body)
		}
		f.addBytes(body)
	}
	return hex.EncodeToString(f.sum())
}

// canonicalJSON re-encodes a JSON document with sorted keys and no
// insignificant whitespace. Numbers keep their literal text. A body that is
// not a single JSON value is returned unchanged, so it hashes as bytes.
func canonicalJSON(body []byte) []byte {
	v, ok := decodeJSON(body)
	if !ok {
		return body
	}
	out, err := json.Marshal(v) // encoding/json sorts map keys
	if err != nil {
		return body
	}
	return out
}

func decodeJSON(body []byte) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	// dec.More is false before a stray ']' or '}', so check the rest
	// directly: only JSON whitespace may follow the value.
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, false
	}
	return v, true
}

// StorageKey builds the opaque key a Store sees from the caller scope and
// the client's key: base64url(SHA-256), 43 bytes. Raw keys and credentials
// are never stored.
func StorageKey(scope, key string) string {
	f := newFieldHash("gopotency/key/v1")
	f.add(scope)
	f.add(key)
	return base64.RawURLEncoding.EncodeToString(f.sum())
}

// Scope hashes the caller identity chosen by p. It is "" for an anonymous
// caller (no scope header sent and no principal).
func callerScope(p *Policy, r *Request) string {
	var parts []string
	for _, name := range p.ScopeHeaders {
		if vs := r.Header.Values(name); len(vs) > 0 {
			parts = append(parts, strings.ToLower(name), strings.Join(vs, "\x00"))
		}
	}
	if p.ScopePrincipal && r.Principal != "" {
		parts = append(parts, ":principal", r.Principal)
	}
	if len(parts) == 0 {
		return ""
	}
	f := newFieldHash("gopotency/scope/v1")
	for _, s := range parts {
		f.add(s)
	}
	return hex.EncodeToString(f.sum())
}

// deriveKey computes an automatic key from the request parts chosen by a.
func deriveKey(a *AutoKey, r *Request) string {
	f := newFieldHash("gopotency/autokey/v1")
	f.add(r.Method)
	f.add(r.Path)
	f.addHeaders(r.Header, a.Headers)
	switch {
	case len(a.JSONFields) > 0:
		doc, isJSON := decodeJSON(r.Body)
		if !isJSON {
			// Without a JSON document the chosen fields are all absent;
			// hash the bytes so unrelated requests never share a key.
			f.add("!not-json")
			f.addBytes(r.Body)
			break
		}
		for _, path := range a.JSONFields {
			f.add(path)
			v, _ := json.Marshal(jsonField(doc, path))
			f.addBytes(v)
		}
	case a.Body:
		f.addBytes(r.Body)
	}
	return "auto." + hex.EncodeToString(f.sum())
}

func jsonField(doc any, path string) any {
	for _, part := range strings.Split(path, ".") {
		m, ok := doc.(map[string]any)
		if !ok {
			return nil
		}
		doc = m[part]
	}
	return doc
}
