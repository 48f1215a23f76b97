package idempotency_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// These tests run the engine and a memstore on the real clock inside a
// synctest bubble: time is virtual and advances only when every goroutine
// waits, so lease windows of milliseconds are exact, whatever the load.

// opStore logs every store call in order, on the bubble's clock.
type opStore struct {
	*memstore.Store
	mu  sync.Mutex
	log []string
}

func (s *opStore) note(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		op += "!"
	}
	s.log = append(s.log, op)
}

func (s *opStore) Extend(ctx context.Context, c idempotency.Claim) error {
	err := s.Store.Extend(ctx, c)
	s.note("extend", err)
	return err
}

func (s *opStore) Release(ctx context.Context, c idempotency.Claim) error {
	err := s.Store.Release(ctx, c)
	s.note("release", err)
	return err
}

func (s *opStore) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	err := s.Store.Complete(ctx, c, rec)
	s.note("complete", err)
	return err
}

func (s *opStore) ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func bubbleEngine(t *testing.T) (*opStore, *idempotency.Engine) {
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	s := &opStore{Store: mem}
	return s, idempotency.New(s)
}

func count(ops []string, op string) int {
	n := 0
	for _, o := range ops {
		if o == op {
			n++
		}
	}
	return n
}

// A 60ms lease held for 300ms is renewed every 20ms and never lets a
// duplicate in; renewal stops at once when the lease is settled.
func TestKeepAliveOutlivesLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, eng := bubbleEngine(t)
		p := idempotency.DefaultPolicy()
		p.Lease = 60 * time.Millisecond
		ctx := context.Background()

		d := eng.Begin(ctx, &p, post("slow", orderJSON))
		require.Equal(t, idempotency.Proceed, d.Kind)
		reqCtx, cancelReq := context.WithCancel(ctx)
		d.Lease.KeepAlive(reqCtx)
		d.Lease.KeepAlive(reqCtx) // a second call is a no-op, not a second renewer
		cancelReq()               // the client went away; the handler is still running

		for range 30 {
			time.Sleep(10 * time.Millisecond)
			dup := eng.Begin(ctx, &p, post("slow", orderJSON))
			requireReject(t, dup, 409, "request-in-progress")
		}
		require.NoError(t, d.Lease.Complete(ctx, response(201, "slow done")))
		ops := s.ops()
		// One renewal per 20ms over 300ms; the one due at the instant of
		// Complete may or may not get in first.
		assert.Contains(t, []int{14, 15}, count(ops, "extend"), "renewals: %v", ops)
		assert.NotContains(t, ops, "extend!")
		time.Sleep(time.Second)
		assert.Equal(t, ops, s.ops(), "no store call after Complete")

		r := eng.Begin(ctx, &p, post("slow", orderJSON))
		require.Equal(t, idempotency.Replay, r.Kind)
		assert.Equal(t, "slow done", string(r.Record.Body))
	})
}

// Without KeepAlive the same request's lease runs out: duplicates are told
// the outcome is unknown (they do not run), and the holder may still
// record its answer late.
func TestLeaseExpiresWithoutKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, eng := bubbleEngine(t)
		p := idempotency.DefaultPolicy()
		p.Lease = 20 * time.Millisecond
		d := eng.Begin(context.Background(), &p, post("slow", orderJSON))
		require.Equal(t, idempotency.Proceed, d.Kind)
		time.Sleep(20 * time.Millisecond)
		requireReject(t, eng.Begin(context.Background(), &p, post("slow", orderJSON)), 424, "outcome-unknown")
		require.NoError(t, d.Lease.Complete(context.Background(), response(201, "late")))
		assert.Equal(t, idempotency.Replay, eng.Begin(context.Background(), &p, post("slow", orderJSON)).Kind)
	})
}

// A claim purged (or lost by the store) under a running request is
// re-created by its next renewal, so the key never looks free.
func TestKeepAliveRecreatesVanishedClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, eng := bubbleEngine(t)
		p := idempotency.DefaultPolicy()
		p.Lease = 30 * time.Millisecond
		d := eng.Begin(context.Background(), &p, post("k", orderJSON))
		require.Equal(t, idempotency.Proceed, d.Kind)
		d.Lease.KeepAlive(context.Background())
		require.NoError(t, s.Delete(context.Background(), d.Lease.StorageKey(), nil))
		time.Sleep(10*time.Millisecond + time.Microsecond) // the first renewal
		requireReject(t, eng.Begin(context.Background(), &p, post("k", orderJSON)), 409, "request-in-progress")
		time.Sleep(time.Second)
		requireReject(t, eng.Begin(context.Background(), &p, post("k", orderJSON)), 409, "request-in-progress")
		require.NoError(t, d.Lease.Complete(context.Background(), response(201, "x")))
	})
}

// A renewal never reaches the store after the lease was settled: a late
// Extend would re-create a released claim and strand the key.
func TestNoRenewalAfterSettle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, eng := bubbleEngine(t)
		p := idempotency.DefaultPolicy()
		p.Lease = 30 * time.Millisecond
		for i := range 50 {
			d := eng.Begin(context.Background(), &p, post("k", orderJSON))
			require.Equal(t, idempotency.Proceed, d.Kind, "round %d", i)
			d.Lease.KeepAlive(context.Background())
			time.Sleep(time.Duration(i) * time.Millisecond)
			require.NoError(t, d.Lease.Complete(context.Background(), response(503, ""))) // renewals racing the settle
			time.Sleep(100 * time.Millisecond)
			ops := s.ops()
			require.Equal(t, "release", ops[len(ops)-1], "round %d: %v", i, ops)
		}
	})
}
