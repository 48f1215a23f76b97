package idempotency

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// checkKey validates a key handed over directly (Operation.Key): 1..255
// bytes of valid UTF-8 without control characters (C0, DEL, C1), the
// natural rule for a key passed to a function or read from gRPC metadata, a
// message or a database column. Spaces are allowed; nothing is trimmed.
// The error wraps ErrKeyMalformed and says what is wrong. HTTP header
// values go through parseKey instead, which also accepts the sf-string
// form.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty value", ErrKeyMalformed)
	case len(key) > maxKeyLength:
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrKeyMalformed, len(key), maxKeyLength)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: not valid UTF-8", ErrKeyMalformed)
	}
	for i, r := range key {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return fmt.Errorf("%w: control character %U at byte %d", ErrKeyMalformed, r, i)
		}
	}
	return nil
}

// Operation is a request whose key the front end hands over directly
// instead of in an HTTP header: a gRPC call (key from metadata), a plain
// function call, a message from a queue. BeginOperation runs it through
// the same store, lease, in-flight and mismatch rules as an HTTP request.
//
// Of the Policy, an operation uses KeyRequired, Retention, Lease,
// Fingerprint (FingerprintNone binds nothing; any other mode binds Name and
// Payload), DoNotStore, MaxResponseBody, the replay lists, WaitInFlight and
// FailOpen. Methods, KeyHeader, the header lists, the body caps and
// AutoKey describe HTTP requests and are not consulted.
type Operation struct {
	// Namespace separates key spaces: the same key under two namespaces
	// names two records (a function name, "grpc"). Operations never share
	// records with HTTP requests, whatever the namespace.
	Namespace string
	// Name says what the operation does (a gRPC full method name). It is
	// bound to the key like Payload, so reusing a key for another Name is
	// a Mismatch, as reusing an HTTP key on another path is.
	Name string
	// Key is the caller's key as given; "" means none was given: 1..255
	// bytes of UTF-8 text without control characters.
	Key string
	// Scope identifies the caller (tenant, user, authenticated peer). Its
	// parts are hashed into the storage key, so callers never see each
	// other's records; none means one anonymous scope.
	Scope []string
	// Payload binds the key to one request (the encoded request message or
	// function input). It is hashed, never stored: the same key with
	// another payload is a Mismatch.
	Payload []byte
}

// StorageKey returns the opaque key a Store sees for op (to purge it
// with Store.Delete, or in tests): base64url(SHA-256), 43 bytes, in a
// domain of its own, so it never equals the key of an HTTP request.
func (op *Operation) StorageKey() string {
	f := newFieldHash("gopotency/operation-key/v1")
	f.add(op.Namespace)
	f.addBytes(op.scopeHash())
	f.add(op.Key)
	return base64.RawURLEncoding.EncodeToString(f.sum())
}

// scopeHash hashes the scope parts, length-prefixed so no two part lists
// collide.
func (op *Operation) scopeHash() []byte {
	f := newFieldHash("gopotency/operation-scope/v1")
	for _, s := range op.Scope {
		f.add(s)
	}
	return f.sum()
}

// fingerprint binds Name and Payload, or nothing under FingerprintNone.
func (op *Operation) fingerprint(p *Policy) string {
	if p.Fingerprint == FingerprintNone {
		return ""
	}
	f := newFieldHash("gopotency/operation-fingerprint/v1")
	f.add(op.Name)
	f.addBytes(op.Payload)
	return hex.EncodeToString(f.sum())
}

// BeginOperation is Begin for an operation that carries its key directly.
// Its Decision has the same kinds and is settled the same way: with a
// Lease, KeepAlive while the operation runs, then Complete or Abandon.
// Pass means no key was given on a policy that does not require one (or a
// store failure under FailOpen).
func (e *Engine) BeginOperation(ctx context.Context, p *Policy, op Operation) Decision {
	return e.decided(e.beginOperation(ctx, p, &op))
}

func (e *Engine) beginOperation(ctx context.Context, p *Policy, op *Operation) Decision {
	if op.Key == "" {
		if p.KeyRequired {
			return reject(ErrKeyMissing, "")
		}
		return Decision{Kind: Pass}
	}
	if err := checkKey(op.Key); err != nil {
		return reject(err, "")
	}
	return e.decide(ctx, p, op.StorageKey(), op.fingerprint(p), nil)
}
