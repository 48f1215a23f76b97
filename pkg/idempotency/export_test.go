package idempotency

import "context"

// CanonicalJSON exposes canonicalJSON to the external tests and fuzz targets.
var CanonicalJSON = canonicalJSON

// Renew renews l once, as KeepAlive does, for the tests.
func (l *Lease) Renew(ctx context.Context) error { return l.renew(ctx) }

// Unexported helpers the external tests pin down.
var (
	CheckKey          = checkKey
	FingerprintOf     = fingerprint
	DeriveKey         = deriveKey
	Scope             = callerScope
	ReplayableHeaders = replayableHeaders
	ParseKey          = parseKey

	ErrResponseIncomplete = errResponseIncomplete
	ErrRecordEvicted      = errRecordEvicted
)

const (
	DefaultLease = defaultLease
	MaxKeyLength = maxKeyLength
)

const DefaultRetention = defaultRetention

type StatusError = statusError
