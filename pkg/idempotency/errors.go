package idempotency

import "errors"

// Errors produced by the engine. Each maps to exactly one problem type in
// the table in problem.go; wrap them with %w to add detail.
var (
	ErrKeyMissing      = errors.New("idempotency: key required")
	ErrKeyMalformed    = errors.New("idempotency: key malformed")
	ErrInFlight        = errors.New("idempotency: request with this key is in progress")
	ErrMismatch        = errors.New("idempotency: key reused with a different request")
	ErrRecordTooLarge  = errors.New("idempotency: stored response exceeded the size cap")
	ErrRequestTooLarge = errors.New("idempotency: request body exceeds the fingerprint cap")
)
