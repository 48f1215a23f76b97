// Package memstore is the embedded, in-process Store: the default of the
// server and the reference implementation of the Store contract. It is
// correct within one process only; use a shared store (Redis, SQL) when
// several instances serve the same keys.
package memstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Options configure a Store. The zero value is ready to use.
type Options struct {
	// Now is the clock (time.Now by default); tests pass a fake one.
	Now func() time.Time
	// SweepInterval is how often expired entries are dropped (1 minute by
	// default). Expiry is also checked on every read.
	SweepInterval time.Duration
}

type entry struct {
	token       string
	fingerprint string
	expires     time.Time
	rec         *idempotency.Record
}

// Store is a mutex-guarded map. One lock makes every operation atomic,
// which is all the contract asks; contention is per process, not per key,
// and measured in the README's benchmark table.
type Store struct {
	mu      sync.Mutex
	entries map[string]*entry
	now     func() time.Time
	stop    chan struct{}
	once    sync.Once
}

var _ idempotency.Store = (*Store)(nil)

// New returns an empty store and starts its sweeper; Close stops it.
func New(o Options) *Store {
	s := &Store{entries: map[string]*entry{}, now: o.Now, stop: make(chan struct{})}
	if s.now == nil {
		s.now = time.Now
	}
	iv := o.SweepInterval
	if iv <= 0 {
		iv = time.Minute
	}
	go s.sweep(iv)
	return s
}

// Close stops the sweeper. The store stays usable.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	return nil
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

func (s *Store) sweep(iv time.Duration) {
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			now := s.now()
			for k, e := range s.entries {
				if !now.Before(e.expires) {
					delete(s.entries, k)
				}
			}
			s.mu.Unlock()
		}
	}
}

// live returns the unexpired entry for key; the caller holds s.mu.
func (s *Store) live(key string, now time.Time) *entry {
	e := s.entries[key]
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	return e
}

func (s *Store) Acquire(ctx context.Context, key, fingerprint string, lease time.Duration) (idempotency.AcquireResult, error) {
	if err := ctx.Err(); err != nil {
		return idempotency.AcquireResult{}, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if e := s.live(key, now); e != nil {
		switch {
		case e.fingerprint != fingerprint:
			return idempotency.AcquireResult{Outcome: idempotency.Mismatch}, nil
		case e.rec != nil:
			return idempotency.AcquireResult{Outcome: idempotency.Completed, Record: copyRecord(e.rec)}, nil
		default:
			return idempotency.AcquireResult{Outcome: idempotency.InFlight, RetryAfter: max(e.expires.Sub(now), time.Millisecond)}, nil
		}
	}
	tok := newToken()
	s.entries[key] = &entry{token: tok, fingerprint: fingerprint, expires: now.Add(lease)}
	return idempotency.AcquireResult{Outcome: idempotency.Acquired, Token: tok}, nil
}

// owned returns key's in-flight entry if token owns it; the caller holds s.mu.
func (s *Store) owned(key, token string) (*entry, error) {
	e := s.live(key, s.now())
	if e == nil || e.rec != nil || e.token != token {
		return nil, fmt.Errorf("memstore: %w", idempotency.ErrLeaseLost)
	}
	return e, nil
}

func (s *Store) Complete(ctx context.Context, key, token string, rec *idempotency.Record, retention time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.owned(key, token)
	if err != nil {
		return err
	}
	e.rec, e.token, e.expires = copyRecord(rec), "", s.now().Add(retention)
	return nil
}

func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live(key, s.now()) == nil {
		return nil
	}
	if _, err := s.owned(key, token); err != nil {
		return err
	}
	delete(s.entries, key)
	return nil
}

func (s *Store) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.owned(key, token)
	if err != nil {
		return err
	}
	e.expires = s.now().Add(lease)
	return nil
}

func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.live(key, s.now())
	if e == nil {
		return nil, fmt.Errorf("memstore: %w", idempotency.ErrNotFound)
	}
	out := &idempotency.Entry{State: idempotency.StateInFlight, Fingerprint: e.fingerprint, ExpiresAt: e.expires}
	if e.rec != nil {
		out.State, out.Record = idempotency.StateCompleted, copyRecord(e.rec)
	}
	return out, nil
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, key)
	return nil
}

// copyRecord keeps callers from mutating stored data through shared slices.
func copyRecord(r *idempotency.Record) *idempotency.Record {
	c := *r
	c.Headers = append([]idempotency.Header(nil), r.Headers...)
	c.Body = append([]byte(nil), r.Body...)
	return &c
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
