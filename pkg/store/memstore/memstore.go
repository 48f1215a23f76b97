// Package memstore is the embedded, in-process Store: the default of the
// server and the reference implementation of the Store contract. It is
// correct within one process only; use a shared store (Redis, SQL) when
// several instances serve the same keys.
//
// Memory is bounded (Options.MaxBytes, Options.MaxEntries) without giving
// up at-most-once: when the byte budget is reached, the oldest replayable
// responses lose their headers and body and keep only their key,
// fingerprint and status (idempotency.MarkEvicted, so their retries are
// told the operation ran instead of running it again). In-flight claims
// and outcome marks are never dropped; when the entry budget is reached,
// new claims fail with ErrStoreUnavailable (503) until entries expire.
package memstore

import (
	"container/heap"
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Default budgets, sized for a small server.
const (
	DefaultMaxBytes   = 256 << 20
	DefaultMaxEntries = 1_000_000
	// entryOverhead approximates what one entry costs beyond its payload
	// (map slot, struct, key, fingerprint, token, heap slot), so the byte
	// budget bounds the whole store, not only bodies.
	entryOverhead = 320
	// sweepBatch bounds the expired entries dropped per lock hold.
	sweepBatch = 256
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Now is the clock (time.Now by default); tests pass a fake one.
	Now func() time.Time
	// SweepInterval is how often expired entries are dropped (1 minute by
	// default). Expiry is also checked on every read.
	SweepInterval time.Duration
	// MaxBytes bounds the memory the entries use, approximately
	// (DefaultMaxBytes when zero).
	MaxBytes int64
	// MaxEntries bounds the number of entries (DefaultMaxEntries when
	// zero).
	MaxEntries int
}

type entry struct {
	key         string
	token       string // the claim's owner, kept with its record
	fingerprint string
	leaseUntil  time.Time
	expires     time.Time // retention deadline
	rec         *idempotency.Record
	size        int64         // bytes charged to the budget
	heapIdx     int           // position in Store.byExpiry
	replayable  *list.Element // in Store.replayable while rec has a payload
}

// Store is a mutex-guarded map. One lock makes every operation atomic,
// which is all the contract asks; contention is per process, not per key,
// and measured in the README's benchmark table.
type Store struct {
	mu         sync.Mutex
	entries    map[string]*entry
	byExpiry   expiryHeap // every entry, soonest retention deadline first
	replayable *list.List // entries with a stored payload, oldest recorded first
	bytes      int64
	evicted    int64
	maxBytes   int64
	maxEntries int
	now        func() time.Time
	stop       chan struct{}
	once       sync.Once
}

var _ idempotency.Store = (*Store)(nil)

// New returns an empty store and starts its sweeper; Close stops it.
func New(o Options) *Store {
	s := &Store{entries: map[string]*entry{}, replayable: list.New(), now: o.Now, stop: make(chan struct{}),
		maxBytes: o.MaxBytes, maxEntries: o.MaxEntries}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytes
	}
	if s.maxEntries <= 0 {
		s.maxEntries = DefaultMaxEntries
	}
	iv := o.SweepInterval
	if iv <= 0 {
		iv = time.Minute
	}
	go s.sweeper(iv)
	return s
}

// Close stops the sweeper. The store stays usable.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
}

// Stats is a snapshot of the store's size.
type Stats struct {
	Entries int
	Bytes   int64
	// Evicted counts responses reduced to their status to stay within
	// MaxBytes.
	Evicted int64
}

// Stats returns the current size (entries not yet swept included).
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Entries: len(s.entries), Bytes: s.bytes, Evicted: s.evicted}
}

// Len returns the number of live entries.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for _, e := range s.entries {
		if now.Before(e.expires) {
			n++
		}
	}
	return n
}

func (s *Store) sweeper(iv time.Duration) {
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep drops every expired entry, a bounded batch per lock hold so
// requests never wait behind a whole-map scan.
func (s *Store) Sweep() {
	for {
		s.mu.Lock()
		more := s.dropExpired(s.now(), sweepBatch) == sweepBatch
		s.mu.Unlock()
		if !more {
			return
		}
	}
}

// dropExpired removes up to limit entries past their retention, oldest
// first, and returns how many; the caller holds s.mu.
func (s *Store) dropExpired(now time.Time, limit int) int {
	n := 0
	for n < limit && len(s.byExpiry) > 0 && !now.Before(s.byExpiry[0].expires) {
		s.remove(s.byExpiry[0])
		n++
	}
	return n
}

// live returns the unexpired entry for key, dropping an expired one; the
// caller holds s.mu.
func (s *Store) live(key string, now time.Time) *entry {
	e := s.entries[key]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) {
		s.remove(e)
		return nil
	}
	return e
}

func (s *Store) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	if err := check(ctx, c); err != nil {
		return idempotency.AcquireResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e := s.live(c.Key, now); e != nil {
		switch {
		case e.fingerprint != c.Fingerprint:
			return idempotency.AcquireResult{State: idempotency.Mismatch}, nil
		case e.rec != nil:
			return idempotency.AcquireResult{State: idempotency.Completed, Record: copyRecord(e.rec)}, nil
		case now.Before(e.leaseUntil):
			return idempotency.AcquireResult{State: idempotency.InFlight, RetryAfter: max(e.leaseUntil.Sub(now), time.Millisecond)}, nil
		case !o.TakeOverExpired:
			return idempotency.AcquireResult{State: idempotency.LeaseExpired}, nil
		}
		s.remove(e) // take over: the old token is fenced off with it
	}
	if len(s.entries) >= s.maxEntries && s.dropExpired(now, sweepBatch) == 0 {
		// Full of live entries (expired ones, not yet swept, make room).
		return idempotency.AcquireResult{}, fmt.Errorf("memstore: %w: full (%d entries; max_entries)", idempotency.ErrStoreUnavailable, len(s.entries))
	}
	s.claim(c, now)
	return idempotency.AcquireResult{State: idempotency.Acquired}, nil
}

// claim stores a new in-flight claim for c; the caller holds s.mu.
func (s *Store) claim(c idempotency.Claim, now time.Time) {
	// Kept at least while the lease runs, as the other stores do.
	e := &entry{key: c.Key, token: c.Token, fingerprint: c.Fingerprint, leaseUntil: now.Add(c.Lease), expires: now.Add(max(c.Retention, c.Lease))}
	e.size = entryOverhead + int64(len(c.Key)+len(c.Fingerprint))
	s.entries[c.Key] = e
	s.bytes += e.size
	heap.Push(&s.byExpiry, e)
}

// owned runs f under s.mu with c's entry when c.Token holds it (its claim,
// or the record it completed), or nil when the key is absent; another
// token's entry is ErrLeaseLost and f does not run.
func (s *Store) owned(ctx context.Context, c idempotency.Claim, f func(e *entry) error) error {
	if err := check(ctx, c); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(c.Key, s.now())
	if e != nil && e.token != c.Token {
		return fmt.Errorf("memstore: %w", idempotency.ErrLeaseLost)
	}
	return f(e)
}

// lost is ErrLeaseLost for a record met by Release or Extend: even the
// token that completed it has no claim left.
var lost = fmt.Errorf("memstore: %w", idempotency.ErrLeaseLost)

func (s *Store) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	if rec == nil {
		return fmt.Errorf("memstore: complete: nil record")
	}
	return s.owned(ctx, c, func(e *entry) error { return s.complete(c, e, rec) })
}

func (s *Store) complete(c idempotency.Claim, e *entry, rec *idempotency.Record) error {
	if e != nil && e.rec != nil {
		return nil // completed by c.Token already: the first record stands
	}
	now := s.now()
	if e == nil { // the claim vanished (purged): record under c
		s.claim(c, now)
		e = s.entries[c.Key]
	}
	e.rec, e.expires = copyRecord(rec), now.Add(c.Retention)
	heap.Fix(&s.byExpiry, e.heapIdx)
	if payload := recordBytes(e.rec); payload > 0 {
		e.size += payload
		s.bytes += payload
		if e.rec.Mark == idempotency.MarkNone {
			// Only replayable responses are evictable; a mark's few
			// headers (response-incomplete's) are kept with it.
			e.replayable = s.replayable.PushBack(e)
		}
	}
	s.enforceBytes()
	return nil
}

func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	return s.owned(ctx, c, func(e *entry) error {
		switch {
		case e == nil:
			return nil
		case e.rec != nil:
			return lost
		}
		s.remove(e)
		return nil
	})
}

func (s *Store) Extend(ctx context.Context, c idempotency.Claim) error {
	return s.owned(ctx, c, func(e *entry) error { return s.extend(c, e) })
}

func (s *Store) extend(c idempotency.Claim, e *entry) error {
	if e != nil && e.rec != nil {
		return lost
	}
	now := s.now()
	if e == nil {
		s.claim(c, now) // re-create a vanished claim
		return nil
	}
	e.leaseUntil = now.Add(c.Lease)
	if e.expires.Before(e.leaseUntil) { // a claim renewed past its retention
		e.expires = e.leaseUntil
		heap.Fix(&s.byExpiry, e.heapIdx)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e := s.live(key, now)
	if e == nil {
		return nil, fmt.Errorf("memstore: %w", idempotency.ErrNotFound)
	}
	out := &idempotency.Entry{State: e.state(now), Token: e.token, Fingerprint: e.fingerprint, ExpiresAt: e.expires, LeaseExpiresAt: e.leaseUntil}
	if e.rec != nil {
		out.Record, out.LeaseExpiresAt = copyRecord(e.rec), time.Time{}
	}
	return out, nil
}

func (e *entry) state(now time.Time) idempotency.State {
	switch {
	case e.rec != nil:
		return idempotency.Completed
	case !now.Before(e.leaseUntil):
		return idempotency.LeaseExpired
	}
	return idempotency.InFlight
}

func (s *Store) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seen == nil {
		if e := s.entries[key]; e != nil {
			s.remove(e)
		}
		return nil
	}
	now := s.now()
	e := s.live(key, now)
	if e == nil || e.token != seen.Token || e.state(now) != seen.State {
		return fmt.Errorf("memstore: delete: %w: the entry changed since it was read", idempotency.ErrNotFound)
	}
	s.remove(e)
	return nil
}

// remove drops e from every index; the caller holds s.mu.
func (s *Store) remove(e *entry) {
	delete(s.entries, e.key)
	heap.Remove(&s.byExpiry, e.heapIdx)
	if e.replayable != nil {
		s.replayable.Remove(e.replayable)
		e.replayable = nil
	}
	s.bytes -= e.size
}

// enforceBytes reduces the oldest replayable responses to their status
// until the store is within MaxBytes; the caller holds s.mu. Claims and
// marks are never touched: dropping them could run a request twice.
func (s *Store) enforceBytes() {
	if s.bytes > s.maxBytes {
		s.dropExpired(s.now(), sweepBatch) // expired entries go before live responses
	}
	for s.bytes > s.maxBytes && s.replayable.Len() > 0 {
		e := s.replayable.Remove(s.replayable.Front()).(*entry)
		e.replayable = nil
		payload := recordBytes(e.rec)
		e.rec = &idempotency.Record{Status: e.rec.Status, Mark: idempotency.MarkEvicted, CreatedAt: e.rec.CreatedAt}
		e.size -= payload
		s.bytes -= payload
		s.evicted++
	}
}

// recordBytes is the payload a record adds to its entry.
func recordBytes(r *idempotency.Record) int64 {
	n := int64(len(r.Body))
	for _, h := range r.Headers {
		n += int64(len(h.Name) + len(h.Value) + 32)
	}
	return n
}

func check(ctx context.Context, c idempotency.Claim) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	return nil
}

// copyRecord keeps callers from mutating stored data through shared slices.
func copyRecord(r *idempotency.Record) *idempotency.Record {
	c := *r
	c.Headers = append([]idempotency.Header(nil), r.Headers...)
	c.Body = append([]byte(nil), r.Body...)
	return &c
}

// expiryHeap orders entries by retention deadline (container/heap).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
