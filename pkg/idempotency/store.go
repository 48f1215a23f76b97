package idempotency

import (
	"context"
	"errors"
	"time"
)

// Store is the persistence contract every backend implements. It is the only
// place where atomicity lives: the engine never reads a key and then writes it
// (check-then-act); it asks the store for one atomic claim and one atomic
// completion.
//
// Keys passed to a Store are opaque storage keys built by the engine (a hash of
// the caller scope and the client's key); a Store never sees a raw
// Idempotency-Key or credential. Keys are at most 128 bytes of URL-safe ASCII.
//
// An entry for a key is in one of three states:
//
//   - absent (never seen, released, purged, or its retention ran out);
//   - in flight: claimed by exactly one token until its lease expires;
//   - completed: holds a Record until its retention runs out.
//
// Expiry is decided by the store's own clock at the moment of each call, never
// by trusting a background reaper alone: an entry whose deadline has passed is
// treated as absent even if it is still physically present.
//
// Every method must honour ctx: when ctx is cancelled or its deadline passes, a
// call returns promptly with an error that wraps ctx.Err(). Transport failures
// are returned wrapped with ErrStoreUnavailable so callers can fail closed;
// an entry that exists but cannot be decoded is reported with
// ErrCorruptRecord, never as absent.
type Store interface {
	// Acquire atomically claims key for a new execution, in one round trip.
	//
	//   - Absent (or expired) entry: stores an in-flight claim holding
	//     fingerprint, valid for lease, and returns Acquired with a fresh,
	//     unguessable Token.
	//   - In flight, lease not expired, same fingerprint: returns InFlight with
	//     RetryAfter set to the time left on the lease (at least 1ms).
	//   - In flight, lease expired: the claim is taken over as if absent (new
	//     token); the previous token is fenced off for good.
	//   - Completed, same fingerprint: returns Completed with the Record.
	//   - In flight or completed with a different fingerprint: returns
	//     Mismatch and changes nothing. Mismatch wins over InFlight.
	//
	// Fingerprints are compared byte for byte; an empty fingerprint (the route
	// does not fingerprint) only matches an empty one.
	Acquire(ctx context.Context, key, fingerprint string, lease time.Duration) (AcquireResult, error)

	// Complete replaces the in-flight claim owned by token with rec, kept for
	// retention. It succeeds only while token still owns an unexpired claim
	// (fencing); otherwise it returns an error wrapping ErrLeaseLost and
	// changes nothing. One round trip.
	Complete(ctx context.Context, key, token string, rec *Record, retention time.Duration) error

	// Release deletes the in-flight claim owned by token so a retry may run.
	// It is idempotent: releasing an absent key, or releasing twice, returns
	// nil. If another token owns the key, or the key is completed, it changes
	// nothing and returns an error wrapping ErrLeaseLost.
	Release(ctx context.Context, key, token string) error

	// Extend renews the in-flight claim owned by token so it expires lease
	// from now. It returns an error wrapping ErrLeaseLost when token no longer
	// owns an unexpired claim.
	Extend(ctx context.Context, key, token string, lease time.Duration) error

	// Get returns the current entry for key (admin and diagnostics). It
	// returns an error wrapping ErrNotFound when the key is absent or expired.
	Get(ctx context.Context, key string) (*Entry, error)

	// Delete purges key whatever its state (admin). Deleting an absent key
	// returns nil.
	Delete(ctx context.Context, key string) error
}

// Outcome is the result of Store.Acquire.
type Outcome int

const (
	// Acquired means the caller now owns the key and must Complete or
	// Release it.
	Acquired Outcome = iota + 1
	// Completed means a record exists and can be replayed.
	Completed
	// InFlight means another execution holds an unexpired lease.
	InFlight
	// Mismatch means the key is bound to a different fingerprint.
	Mismatch
)

func (o Outcome) String() string {
	switch o {
	case Acquired:
		return "acquired"
	case Completed:
		return "completed"
	case InFlight:
		return "in_flight"
	case Mismatch:
		return "mismatch"
	}
	return "unknown"
}

// AcquireResult is what Store.Acquire returns.
type AcquireResult struct {
	Outcome Outcome
	// Token identifies the claim when Outcome is Acquired.
	Token string
	// Record is set when Outcome is Completed.
	Record *Record
	// RetryAfter is the remaining lease when Outcome is InFlight.
	RetryAfter time.Duration
}

// Header is one response header field. Repeated fields (Set-Cookie) are kept
// as separate entries, in order, and never comma-joined.
type Header struct {
	Name  string
	Value string
}

// Record is a stored response. Stores must round-trip every field exactly.
type Record struct {
	Status  int
	Headers []Header
	Body    []byte
	// TooLarge marks a tombstone: the response exceeded the storage cap, so
	// only its status was kept. Retries get a problem, never a re-run.
	TooLarge bool
	// CreatedAt is when the response was recorded (millisecond precision).
	CreatedAt time.Time
}

// State of an entry as seen by Store.Get.
type State int

const (
	StateInFlight State = iota + 1
	StateCompleted
)

func (s State) String() string {
	if s == StateInFlight {
		return "in_flight"
	}
	return "completed"
}

// Entry is the admin view of a stored key.
type Entry struct {
	State       State
	Fingerprint string
	// ExpiresAt is the lease deadline (in flight) or the retention deadline
	// (completed), as seen by the store.
	ExpiresAt time.Time
	// Record is set when State is StateCompleted.
	Record *Record
}

var (
	// ErrLeaseLost is returned when a token no longer owns its claim: the
	// lease expired and was taken over, the key was completed or purged.
	ErrLeaseLost = errors.New("idempotency: lease lost")
	// ErrNotFound is returned by Store.Get for an absent or expired key.
	ErrNotFound = errors.New("idempotency: key not found")
	// ErrStoreUnavailable wraps transport and server failures of a Store.
	ErrStoreUnavailable = errors.New("idempotency: store unavailable")
	// ErrCorruptRecord is returned when a stored entry cannot be decoded.
	// Unlike ErrStoreUnavailable it never lets a request through under
	// fail-open: the request may already have run once.
	ErrCorruptRecord = errors.New("idempotency: stored entry unreadable")
)
