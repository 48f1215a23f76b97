package redisstore

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

func claim(key string) idempotency.Claim {
	return idempotency.Claim{Key: key, Token: idempotency.NewToken(), Fingerprint: "fp", Lease: time.Minute, Retention: time.Hour}
}

// ops calls every Store method once on c's key.
func ops(s *Store, c idempotency.Claim) map[string]func(context.Context) error {
	rec := &idempotency.Record{Status: 201, Body: []byte("x")}
	return map[string]func(context.Context) error{
		"Acquire":  func(x context.Context) error { _, err := s.Acquire(x, c, idempotency.AcquireOptions{}); return err },
		"Complete": func(x context.Context) error { return s.Complete(x, c, rec) },
		"Release":  func(x context.Context) error { return s.Release(x, c) },
		"Extend":   func(x context.Context) error { return s.Extend(x, c) },
		"Get":      func(x context.Context) error { _, err := s.Get(x, c.Key); return err },
		"Delete":   func(x context.Context) error { return s.Delete(x, c.Key, nil) },
	}
}

// A stopped server makes every call fail fast with ErrStoreUnavailable
// (so the engine answers 503), and the store recovers once it is back.
func TestServerStoppedIsUnavailable(t *testing.T) {
	srv := testenv.StartRedis(t)
	ctx := context.Background()
	s, err := NewFromURL(ctx, srv.URL()+"?restart_grace=0", Options{})
	require.NoError(t, err)
	defer s.Close()
	held := claim("k")
	_, err = s.Acquire(ctx, held, idempotency.AcquireOptions{})
	require.NoError(t, err)

	srv.Stop()
	// In parallel: the calls go out in one or two batches, and a batch
	// spends go-redis's retries of a failed dial, cut at maxBatchTime (2s);
	// calls made within downFor of a batch that found the server
	// unreachable fail at once, so the time does not add up batch after
	// batch (Complete and Release of one claim run one after the other).
	var wg sync.WaitGroup
	for name, op := range ops(s, held) {
		wg.Go(func() {
			c, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			start := time.Now()
			err := op(c)
			if assert.Error(t, err, name) {
				assert.ErrorIs(t, err, idempotency.ErrStoreUnavailable, name)
				assert.False(t, errors.Is(err, context.DeadlineExceeded), "%s: the ctx did not end: %v", name, err)
			}
			assert.Less(t, time.Since(start), 3*time.Second, "%s must fail promptly, not hang", name)
		})
	}
	wg.Wait()

	require.NoError(t, srv.Start())
	// One claim, as one request's calls are: an Acquire that met the
	// restarted server leaves its claim for the engine to give back.
	k2 := claim("k2")
	require.Eventually(t, func() bool {
		r, err := s.Acquire(ctx, k2, idempotency.AcquireOptions{})
		return err == nil && r.State == idempotency.Acquired
	}, 5*time.Second, 50*time.Millisecond, "the store reconnects after a restart")
}

// A server that accepts connections but never answers must not hold a call
// past its ctx deadline.
func TestServerSilentHonoursDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() }) // hold it open, say nothing
		}
	}()
	c := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true})
	defer c.Close()
	s, err := New(Options{Client: c})
	require.NoError(t, err)
	for name, op := range ops(s, claim("k")) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		start := time.Now()
		err := op(ctx)
		cancel()
		require.Error(t, err, name)
		assert.ErrorIs(t, err, context.DeadlineExceeded, name)
		assert.Less(t, time.Since(start), 2*time.Second, "%s must stop at the deadline", name)
	}
}
