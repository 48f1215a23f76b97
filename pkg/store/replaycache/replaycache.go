// Package replaycache keeps completed records of a shared store (Redis,
// SQL) in process for a short time, so the replays that come in storms
// right after a first request (a client's retries, a double click) are
// answered without a store round trip or a record decode.
//
// A completed record never changes until its retention runs out or an
// operator purges it, so serving it from memory cannot run anything twice.
// What a cache can do is keep answering for a purged key: on the instance
// that purged, never (Delete evicts at once); on other instances for at most
// Options.TTL. Claims, leases and every other state always come from the
// store. Memory is bounded by Options.MaxBytes, least recently used first.
package replaycache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Defaults of Options.
const (
	DefaultTTL      = 5 * time.Second
	DefaultMaxBytes = 64 << 20
	entryOverhead   = 256
)

// Options configure a cache.
type Options struct {
	// TTL bounds how long a record is served from memory (DefaultTTL when
	// zero): the longest another instance's purge can go unseen here.
	TTL time.Duration
	// MaxBytes bounds the memory the records take (DefaultMaxBytes when
	// zero); the least recently used go first.
	MaxBytes int64
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Store is an idempotency.Store that answers replays from memory.
type Store struct {
	inner idempotency.Store
	ttl   time.Duration
	max   int64
	now   func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element
	lru   *list.List // *entry, most recently used first
	bytes int64
	hits  int64
	// gen counts purges: a fill that read the store before a purge (its
	// generation is older) is not cached after it.
	gen uint64
}

type entry struct {
	key, fp string
	rec     *idempotency.Record
	expires time.Time
	size    int64
}

var (
	_ idempotency.Store = (*Store)(nil)
)

// New wraps inner.
func New(inner idempotency.Store, o Options) *Store {
	s := &Store{inner: inner, ttl: o.TTL, max: o.MaxBytes, now: o.Now, byKey: map[string]*list.Element{}, lru: list.New()}
	if s.ttl <= 0 {
		s.ttl = DefaultTTL
	}
	if s.max <= 0 {
		s.max = DefaultMaxBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Stats reports the cache's size and how many replays it answered.
func (s *Store) Stats() (entries int, bytes, hits int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey), s.bytes, s.hits
}

// Acquire answers a completed key from memory, else asks the store and
// remembers a completed answer.
func (s *Store) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	if err := ctx.Err(); err != nil {
		return idempotency.AcquireResult{}, err
	}
	if err := c.Validate(); err != nil {
		return idempotency.AcquireResult{}, err // as the store would answer
	}
	if res, ok := s.lookup(c); ok {
		return res, nil
	}
	gen := s.generation()
	res, err := s.inner.Acquire(ctx, c, o)
	if err == nil && res.State == idempotency.Completed && res.Record != nil {
		until := s.now().Add(c.Retention)
		if !res.Record.CreatedAt.IsZero() {
			until = res.Record.CreatedAt.Add(c.Retention)
		}
		s.put(c.Key, c.Fingerprint, res.Record, until, gen, false)
	}
	return res, err
}

func (s *Store) lookup(c idempotency.Claim) (idempotency.AcquireResult, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el := s.byKey[c.Key]
	if el == nil {
		return idempotency.AcquireResult{}, false
	}
	e := el.Value.(*entry)
	if !s.now().Before(e.expires) {
		s.remove(el)
		return idempotency.AcquireResult{}, false
	}
	s.lru.MoveToFront(el)
	s.hits++
	if e.fp != c.Fingerprint {
		return idempotency.AcquireResult{State: idempotency.Mismatch}, true
	}
	return idempotency.AcquireResult{State: idempotency.Completed, Record: e.rec}, true
}

func (s *Store) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// put remembers rec until the earlier of until and the TTL, unless a purge
// happened since gen. completing says rec is Complete's: it is copied (the
// caller's), and a live cached record stands (a Complete by the token that
// completed the key changes nothing in the store).
// Cached records are shared read-only with the callers: transports build
// new responses from them and never write into them.
func (s *Store) put(key, fp string, rec *idempotency.Record, until time.Time, gen uint64, completing bool) {
	expires := s.now().Add(s.ttl)
	if until.Before(expires) {
		expires = until
	}
	size := int64(entryOverhead + len(key) + len(fp) + len(rec.Body))
	for _, h := range rec.Headers {
		size += int64(len(h.Name) + len(h.Value) + 32)
	}
	if size > s.max/4 {
		return // one big record would push out many small ones
	}
	if completing {
		cp := *rec
		cp.Headers = append([]idempotency.Header(nil), rec.Headers...)
		cp.Body = append([]byte(nil), rec.Body...)
		rec = &cp
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		return
	}
	if el := s.byKey[key]; el != nil {
		if completing && s.now().Before(el.Value.(*entry).expires) {
			return
		}
		s.remove(el)
	}
	s.byKey[key] = s.lru.PushFront(&entry{key: key, fp: fp, rec: rec, expires: expires, size: size})
	s.bytes += size
	for s.bytes > s.max {
		s.remove(s.lru.Back())
	}
	// Each put drops up to two expired records from the back, where the
	// oldest sit: the cache holds about a TTL's worth of records instead
	// of filling MaxBytes with dead ones (a 10-minute soak showed the
	// server's heap growing towards it).
	now := s.now()
	for range 2 {
		back := s.lru.Back()
		if back == nil || now.Before(back.Value.(*entry).expires) {
			break
		}
		s.remove(back)
	}
}

func (s *Store) remove(el *list.Element) {
	e := s.lru.Remove(el).(*entry)
	delete(s.byKey, e.key)
	s.bytes -= e.size
}

// evict drops key and starts a new generation.
func (s *Store) evict(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	if el := s.byKey[key]; el != nil {
		s.remove(el)
	}
}

// Complete records through the store and remembers the record.
func (s *Store) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	gen := s.generation()
	if err := s.inner.Complete(ctx, c, rec); err != nil {
		return err
	}
	s.put(c.Key, c.Fingerprint, rec, s.now().Add(c.Retention), gen, true)
	return nil
}

// Release, Extend and Get go to the store: claims are never cached, and
// Get (admin, readiness) must see the truth.
func (s *Store) Release(ctx context.Context, c idempotency.Claim) error {
	return s.inner.Release(ctx, c)
}
func (s *Store) Extend(ctx context.Context, c idempotency.Claim) error { return s.inner.Extend(ctx, c) }
func (s *Store) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	return s.inner.Get(ctx, key)
}

// Delete purges key in the store and here. A fill that read the store
// before the purge finished is not cached: gen moves on both sides of it.
func (s *Store) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	s.evict(key)
	err := s.inner.Delete(ctx, key, seen)
	s.evict(key)
	return err
}
