package idempotency

import (
	"context"
	"errors"
	"fmt"
)

// Errors produced by the engine. Each maps to exactly one problem type in
// the table in problem.go; wrap them with %w to add detail.
var (
	ErrKeyMissing      = errors.New("idempotency: key required")
	ErrKeyMalformed    = errors.New("idempotency: key malformed")
	ErrInFlight        = errors.New("idempotency: request with this key is in progress")
	ErrMismatch        = errors.New("idempotency: key reused with a different request")
	ErrRecordTooLarge  = errors.New("idempotency: stored response exceeded the size cap")
	ErrRequestTooLarge = errors.New("idempotency: request body too large to fingerprint")
	// ErrOutcomeUnknown: an earlier request with the key was forwarded and
	// never answered (or its holder vanished); it may have run.
	ErrOutcomeUnknown = errors.New("idempotency: outcome of the earlier request with this key is unknown")
	// ErrServerBusy: the transport is at its memory budget; nothing ran.
	ErrServerBusy = errors.New("idempotency: server busy")
	// ErrMisconfigured: the proxy and the idempotency layer disagree on
	// what must be sent (for example Envoy's request_attributes); failing
	// closed, nothing ran.
	ErrMisconfigured = errors.New("idempotency: proxy configuration does not match")
	// ErrProtocol: a transport reached a state it must never reach (a
	// guarded request got to the upstream without a decision). The
	// request may have run.
	ErrProtocol = errors.New("idempotency: protocol error")
)

// The errors of a record that ran but cannot be replayed, with its status.
// Callers tell them apart by their problem (ProblemFor: response-incomplete
// or response-evicted, with original_status), as the wire does.
var (
	// errResponseIncomplete: an earlier request with the key ran and
	// answered, but its response was cut off (MarkIncomplete).
	errResponseIncomplete = errors.New("idempotency: response of the earlier request with this key was cut off")
	// errRecordEvicted: an earlier request with the key ran, but its
	// stored response was dropped to keep the store within its budget
	// (MarkEvicted).
	errRecordEvicted = errors.New("idempotency: stored response was evicted")
)

// statusError carries the status of an earlier response that cannot be
// replayed (errResponseIncomplete, errRecordEvicted), so the problem can
// tell the client what happened (the original_status member).
type statusError struct {
	Err    error
	Status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%v (original status %d)", e.Err, e.Status)
}

func (e *statusError) Unwrap() error { return e.Err }

// storeDown reports a store call that failed without an answer: the store
// unreachable, or the call cut off by its deadline (the store timeout).
func storeDown(err error) bool {
	return errors.Is(err, ErrStoreUnavailable) || errors.Is(err, context.DeadlineExceeded)
}
