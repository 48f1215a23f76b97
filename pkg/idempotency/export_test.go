package idempotency

import "context"

// CanonicalJSON exposes canonicalJSON to the external tests and fuzz targets.
var CanonicalJSON = canonicalJSON

// Renew renews l once, as KeepAlive does, for the tests.
func (l *Lease) Renew(ctx context.Context) error { return l.renew(ctx) }
