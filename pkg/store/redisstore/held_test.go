package redisstore

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func post(key string) *idempotency.Request {
	return &idempotency.Request{Method: "POST", Path: "/", Header: map[string][]string{"Idempotency-Key": {key}}}
}

// A pass re-creates every claim held here at once: claims Redis lost come
// back before any renewal interval passes; a settled one does not.
func TestReassertRecreatesLostClaims(t *testing.T) {
	c := redisClient(t)
	s := newStore(t, c)
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	ctx := context.Background()
	var held []*idempotency.Lease
	for _, k := range []string{"a", "b", "c"} {
		d := eng.Begin(ctx, &p, post(k))
		require.Equal(t, idempotency.Proceed, d.Kind)
		held = append(held, d.Lease)
		require.NoError(t, c.Del(ctx, s.Key(d.Lease.StorageKey())).Err()) // wiped
	}
	require.NoError(t, held[2].Complete(ctx, &idempotency.Record{Status: 201, Body: []byte("done")}))
	s.reassert()
	for _, k := range []string{"a", "b"} {
		requireSlug(t, eng.Begin(ctx, &p, post(k)), "request-in-progress")
	}
	assert.Equal(t, idempotency.Replay, eng.Begin(ctx, &p, post("c")).Kind)
}

// A pass racing the call that settles a claim never re-creates it after
// the settle: a late Extend would strand a released key.
func TestReassertNeverRecreatesASettledClaim(t *testing.T) {
	c := redisClient(t)
	s := newStore(t, c)
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	ctx := context.Background()
	for i := range 50 {
		d := eng.Begin(ctx, &p, post("k"+strconv.Itoa(i)))
		require.Equal(t, idempotency.Proceed, d.Kind, "round %d", i)
		var wg sync.WaitGroup
		wg.Go(func() { _ = d.Lease.Complete(ctx, &idempotency.Record{Status: 503}) }) // released
		wg.Go(s.reassert)
		wg.Wait()
		n, err := c.Exists(ctx, s.Key(d.Lease.StorageKey())).Result()
		require.NoError(t, err)
		require.Zero(t, n, "round %d: the released key stays free", i)
	}
	s.held.mu.Lock()
	defer s.held.mu.Unlock()
	assert.Empty(t, s.held.claims, "nothing settled is held")
}

// gateHook holds every script call while closed is set, and counts them.
type gateHook struct {
	closed atomic.Bool
	gate   chan struct{}
	calls  atomic.Int64
}

func (g *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if g.closed.Load() {
			for _, cmd := range cmds {
				if cmd.Name() == "evalsha" {
					<-g.gate
					g.calls.Add(1)
				}
			}
		}
		return next(ctx, cmds)
	}
}
func (g *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if g.closed.Load() && cmd.Name() == "evalsha" {
			<-g.gate
			g.calls.Add(1)
		}
		return next(ctx, cmd)
	}
}

// Losses reported while a pass runs join it: one more pass follows, not
// one per report.
func TestReassertCoalescesReportsDuringAPass(t *testing.T) {
	c := redisClient(t)
	g := &gateHook{gate: make(chan struct{})}
	c.AddHook(g)
	s := newStore(t, c)
	ctx := context.Background()
	require.NoError(t, s.Ping(ctx)) // scripts loaded: one EVALSHA per renewal
	eng := idempotency.New(s)
	p := idempotency.DefaultPolicy()
	const n = 20
	for i := range n {
		require.Equal(t, idempotency.Proceed, eng.Begin(ctx, &p, post("co"+strconv.Itoa(i))).Kind)
	}
	g.closed.Store(true)
	done := make(chan struct{})
	go func() { s.reassert(); close(done) }()
	require.Eventually(t, func() bool {
		s.held.passMu.Lock()
		defer s.held.passMu.Unlock()
		return s.held.passing
	}, time.Second, time.Millisecond, "the pass waits at the gate")
	for range 10 {
		s.reassert() // returns at once: a pass runs
	}
	close(g.gate)
	<-done
	assert.Equal(t, int64(2*n), g.calls.Load(), "the running pass and one more")
}
