package idempotency

// CanonicalJSON exposes canonicalJSON to the external tests and fuzz targets.
var CanonicalJSON = canonicalJSON
