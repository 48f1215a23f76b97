package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Stalled is a store whose server can be made to go silent mid-request.
type Stalled struct {
	Store idempotency.Store
	// Stall stops the server answering (connections stay open); Resume
	// lets it answer again.
	Stall, Resume func()
}

// RunStalled checks that every method returns promptly, with ctx's error,
// when ctx is cancelled or its deadline passes while the call waits on a
// server that stopped answering: a store that ignores ctx in the middle of
// I/O would hold a request (and its Envoy stream) until the server came
// back. After Resume the store must work again.
func RunStalled(t *testing.T, open func(t *testing.T) Stalled) {
	s := open(t)
	c := NewClaim("fp", longLease, retention)
	acquire(t, s.Store, c, noTakeover, idempotency.Acquired) // connections open and warm
	calls := map[string]func(context.Context) error{
		"Acquire": func(x context.Context) error {
			_, err := s.Store.Acquire(x, NewClaim("fp", longLease, retention), noTakeover)
			return err
		},
		"Complete": func(x context.Context) error { return s.Store.Complete(x, c, sampleRecord()) },
		"Release":  func(x context.Context) error { return s.Store.Release(x, c) },
		"Extend":   func(x context.Context) error { return s.Store.Extend(x, c) },
		"Get":      func(x context.Context) error { _, err := s.Store.Get(x, c.Key); return err },
		"Delete":   func(x context.Context) error { return s.Store.Delete(x, c.Key, nil) },
	}
	s.Stall()
	for name, call := range calls {
		for _, how := range []string{"cancel", "deadline"} {
			var x context.Context
			var cancel context.CancelFunc
			want := context.Canceled
			if how == "cancel" {
				x, cancel = context.WithCancel(context.Background())
				time.AfterFunc(150*time.Millisecond, cancel)
			} else {
				x, cancel = context.WithTimeout(context.Background(), 150*time.Millisecond)
				want = context.DeadlineExceeded
			}
			start := time.Now()
			err := call(x)
			took := time.Since(start)
			cancel()
			require.Error(t, err, "%s (%s) succeeded against a silent server", name, how)
			assert.True(t, errors.Is(err, want), "%s (%s): %v does not wrap %v", name, how, err, want)
			assert.Less(t, took, time.Second, "%s (%s) must return when its context ends, not when the server answers", name, how)
		}
	}
	s.Resume()
	require.Eventually(t, func() bool {
		x, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := s.Store.Acquire(x, NewClaim("fp", longLease, retention), noTakeover)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "the store recovers once the server answers again")
}
