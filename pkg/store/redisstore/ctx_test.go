package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A call with a near deadline runs on the caller's goroutine; one whose
// ctx ends while it runs fails with ctx's error even if the server
// answered, as the goroutine path does, so the engine releases what it
// wrote.
func TestCallInline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan struct{})
	v, err := call(ctx, true, func(context.Context) (int, error) {
		close(done) // runs before call returns: no goroutine involved
		return 7, nil
	})
	if v != 7 || err != nil {
		t.Fatalf("got %v, %v", v, err)
	}
	<-done

	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	_, err = call(ctx, true, func(context.Context) (int, error) {
		cancel() // the request's stream is reset while Redis answers
		return 7, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled mid-call: got %v, want context.Canceled", err)
	}
}

// Without a near deadline, or with a client that does not bound I/O by
// deadlines, a cancellation returns at once while f still waits.
func TestCallReturnsOnCancel(t *testing.T) {
	for name, tc := range map[string]struct {
		bound   bool
		timeout time.Duration
	}{
		"no deadline":              {bound: true},
		"far deadline":             {bound: true, timeout: time.Hour},
		"client ignores deadlines": {bound: false, timeout: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			if tc.timeout > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tc.timeout)
			}
			release := make(chan struct{})
			defer close(release)
			time.AfterFunc(20*time.Millisecond, cancel)
			start := time.Now()
			_, err := call(ctx, tc.bound, func(context.Context) (int, error) {
				<-release // a server that stopped answering
				return 0, nil
			})
			if !errors.Is(err, context.Canceled) || time.Since(start) > 500*time.Millisecond {
				t.Fatalf("got %v after %v, want context.Canceled at once", err, time.Since(start))
			}
		})
	}
}
