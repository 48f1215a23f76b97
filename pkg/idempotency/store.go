package idempotency

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// The states, leases and what happens when data is lost are explained once,
// in the package documentation; the methods below say what each call does
// in each state.
//
// Every method must honour ctx: when ctx is cancelled or its deadline passes,
// a call returns promptly with an error that wraps ctx.Err(), also in the
// middle of network I/O. Transport failures are returned wrapped with
// ErrStoreUnavailable so callers can fail closed; an entry that exists but
// cannot be decoded is reported with ErrCorruptRecord, never as absent. A
// Claim that fails Claim.Validate is refused with an error wrapping
// ErrInvalidClaim and changes nothing.
type Store interface {
	// Acquire atomically claims c.Key for c.Token, in one round trip.
	//
	//   - Absent: stores an in-flight claim holding c.Token and
	//     c.Fingerprint, alive for c.Lease and kept for c.Retention, and
	//     returns Acquired.
	//   - In flight, same fingerprint: returns InFlight with RetryAfter set
	//     to the time left on the lease (at least 1ms).
	//   - Lease expired, same fingerprint: returns LeaseExpired and changes
	//     nothing; with o.TakeOverExpired the claim is made anew for
	//     c.Token instead (Acquired) and the previous token is fenced off.
	//   - Completed, same fingerprint: returns Completed with the Record.
	//   - Any state with a different fingerprint: returns Mismatch and
	//     changes nothing. Mismatch wins over every other outcome.
	//
	// Fingerprints are compared byte for byte; an empty fingerprint (the
	// route does not fingerprint) only matches an empty one.
	Acquire(ctx context.Context, c Claim, o AcquireOptions) (AcquireResult, error)

	// Complete replaces the claim of c.Token with rec, kept for c.Retention
	// from now, in one round trip. It succeeds while c.Token holds the
	// claim (lease running or expired) and when the key is absent (the
	// claim vanished: rec is stored under c.Fingerprint). The record keeps
	// c.Token, so Complete by the token that already completed the key
	// returns nil and changes nothing (the first record stands): a retry of
	// a call whose reply was lost is told the truth. When another token
	// holds the key (its claim, or a record it completed), it returns an
	// error wrapping ErrLeaseLost and changes nothing.
	Complete(ctx context.Context, c Claim, rec *Record) error

	// Release deletes the claim of c.Token so a retry may run. Releasing an
	// absent key, or releasing twice, returns nil. When another token holds
	// the key, it returns an error wrapping ErrLeaseLost and changes
	// nothing. A record is never released, not even by the token that
	// completed it: that also returns ErrLeaseLost (there is no claim left
	// to release), and the record stays.
	Release(ctx context.Context, c Claim) error

	// Extend renews the claim of c.Token so its lease runs c.Lease from now.
	// On an absent key it re-creates the claim (c.Token, c.Fingerprint,
	// kept for c.Retention). When another token holds the key, or it is
	// completed, it returns an error wrapping ErrLeaseLost.
	Extend(ctx context.Context, c Claim) error

	// Get returns the current entry for key (admin and diagnostics). It
	// returns an error wrapping ErrNotFound when the key is absent or its
	// retention ran out.
	Get(ctx context.Context, key string) (*Entry, error)

	// Delete purges key (admin). With seen nil it deletes whatever is there;
	// deleting an absent key returns nil. With seen set (an Entry Get
	// returned), inspection and deletion are one atomic step: it deletes
	// only while the key still holds that entry (the same Token in the same
	// State, the lease judged by the store's clock at this call), and
	// otherwise changes nothing and returns an error wrapping ErrNotFound:
	// the entry seen is gone (the claim completed, was renewed or taken
	// over, a new claim came, or the key is absent).
	Delete(ctx context.Context, key string, seen *Entry) error
}

// Claim is one execution's hold on a key: what Acquire stores and what
// Complete, Extend and Release present. It carries everything a store needs
// to re-create the claim if it vanished.
type Claim struct {
	// Key is the storage key (StorageKey).
	Key string
	// Token identifies this execution (NewToken); unguessable.
	Token string
	// Fingerprint binds the key to one request (Fingerprint).
	Fingerprint string
	// Lease is how long the claim stays in flight without renewal.
	Lease time.Duration
	// Retention is how long the entry is kept: the claim from Acquire (or
	// its re-creation), the record from Complete.
	Retention time.Duration
}

// Validate reports a claim no store may act on: an empty key or token, or
// a lease or retention that is not positive (a zero lease would be a claim
// that expires as it is made).
func (c Claim) Validate() error {
	switch {
	case c.Key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidClaim)
	case c.Token == "":
		return fmt.Errorf("%w: empty token", ErrInvalidClaim)
	case c.Lease <= 0:
		return fmt.Errorf("%w: lease %v is not positive", ErrInvalidClaim, c.Lease)
	case c.Retention <= 0:
		return fmt.Errorf("%w: retention %v is not positive", ErrInvalidClaim, c.Retention)
	}
	return nil
}

// KeyID shortens a storage key for logs (it is already a hash).
func KeyID(key string) string { return key[:min(12, len(key))] }

// NewToken returns a fresh claim token: 128 random bits, hex.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// AcquireOptions change what Acquire does with an expired lease.
type AcquireOptions struct {
	// TakeOverExpired claims an entry whose lease ran out anew instead of
	// reporting LeaseExpired (Policy.UnknownOutcome RetryAfterLease, for
	// upstreams that roll back work cut off by a crash).
	TakeOverExpired bool
}

// State is where a key stands: the state of an Entry, and what
// Store.Acquire found. InFlight, Completed and LeaseExpired are entry
// states; Acquired and Mismatch are answers only Acquire gives. The
// numbers of the first three are stored by some stores (a conditional
// Delete compares them), so they never change.
type State int

const (
	// InFlight: a claim whose lease is running; Acquire found another
	// execution holding it.
	InFlight State = iota + 1
	// Completed: a Record is kept (see Record.Mark).
	Completed
	// LeaseExpired: a claim whose lease ran out: its holder is gone and
	// the outcome of its request is unknown.
	LeaseExpired
	// Acquired: Acquire made the claim; the caller owns the key and must
	// Complete or Release it.
	Acquired
	// Mismatch: Acquire found the key bound to a different fingerprint.
	Mismatch
)

func (s State) String() string {
	switch s {
	case Acquired:
		return "acquired"
	case Completed:
		return "completed"
	case InFlight:
		return "in_flight"
	case Mismatch:
		return "mismatch"
	case LeaseExpired:
		return "lease_expired"
	}
	return "unknown"
}

// AcquireResult is what Store.Acquire returns.
type AcquireResult struct {
	State State
	// Record is set when State is Completed.
	Record *Record
	// RetryAfter is the remaining lease when State is InFlight.
	RetryAfter time.Duration
}

// Header is one response header field. Repeated fields (Set-Cookie) are kept
// as separate entries, in order, and never comma-joined.
type Header struct {
	Name  string
	Value string
}

// Mark says what a Record stands for when it is not a whole response.
type Mark uint8

const (
	// MarkNone: a whole response, replayed as is.
	MarkNone Mark = iota
	// MarkTooLarge: a tombstone; the response exceeded the storage cap, so
	// only its status was kept. Retries get response-too-large.
	MarkTooLarge
	// MarkIncomplete: the upstream answered (status and headers are kept)
	// but the body was cut off. Retries get response-incomplete with the
	// original status: the operation ran.
	MarkIncomplete
	// MarkUnknown: the request was forwarded and no response head came
	// back (client gone, upstream reset, timeout). Retries get
	// outcome-unknown.
	MarkUnknown
	// MarkEvicted: the response was recorded, then dropped to keep a full
	// store within its memory budget; its status is kept. Retries get
	// response-evicted with the original status: the operation ran.
	MarkEvicted
)

func (m Mark) String() string {
	switch m {
	case MarkNone:
		return "none"
	case MarkTooLarge:
		return "too_large"
	case MarkIncomplete:
		return "incomplete"
	case MarkUnknown:
		return "unknown"
	case MarkEvicted:
		return "evicted"
	}
	return fmt.Sprintf("mark(%d)", uint8(m))
}

// Valid reports whether m is one of the marks above.
func (m Mark) Valid() bool { return m <= MarkEvicted }

// Record is a stored response. Stores must round-trip every field exactly.
type Record struct {
	Status  int
	Headers []Header
	Body    []byte
	// Mark is MarkNone for a whole response; otherwise it says why the
	// record cannot be replayed (Body is then empty).
	Mark Mark
	// CreatedAt is when the record was written (millisecond precision).
	CreatedAt time.Time
}

// Entry is the admin view of a stored key.
type Entry struct {
	// State is InFlight, Completed or LeaseExpired.
	State State
	// Token is the claim's token, kept with the record it completed; it
	// tells this entry from a later one for Delete. Empty for records
	// completed before records kept their token. Never shown to clients.
	Token       string
	Fingerprint string
	// ExpiresAt is when the entry is forgotten (its retention deadline),
	// as seen by the store.
	ExpiresAt time.Time
	// LeaseExpiresAt is the lease deadline of a claim (zero once
	// completed).
	LeaseExpiresAt time.Time
	// Record is set when State is Completed.
	Record *Record
}

var (
	// ErrLeaseLost is returned when a token no longer owns its claim:
	// another token holds the key (it took the key over, or completed
	// it). Release also returns it for a record its own token completed.
	ErrLeaseLost = errors.New("idempotency: lease lost")
	// ErrNotFound is returned by Store.Get for an absent or expired key,
	// and by Store.Delete when the entry it was given is no longer there.
	ErrNotFound = errors.New("idempotency: key not found")
	// ErrStoreUnavailable wraps transport and server failures of a Store.
	ErrStoreUnavailable = errors.New("idempotency: store unavailable")
	// ErrCorruptRecord is returned when a stored entry cannot be decoded.
	// Unlike ErrStoreUnavailable it never lets a request through under
	// fail-open: the request may already have run once.
	ErrCorruptRecord = errors.New("idempotency: stored entry unreadable")
	// ErrInvalidClaim is returned for a Claim that fails Validate.
	ErrInvalidClaim = errors.New("idempotency: invalid claim")
)
