package behaviortest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// OutageStore wraps a Store so a test can make it unreachable: while down,
// every call fails with an error wrapping idempotency.ErrStoreUnavailable.
// In-process front ends pass its Outage method as Target.StoreOutage.
type OutageStore struct {
	idempotency.Store
	down atomic.Bool
}

// NewOutageStore wraps s, up.
func NewOutageStore(s idempotency.Store) *OutageStore { return &OutageStore{Store: s} }

// Outage takes the store down until the returned function (also registered
// with t.Cleanup) brings it back.
func (o *OutageStore) Outage(t testing.TB) (restore func()) {
	o.down.Store(true)
	restore = func() { o.down.Store(false) }
	t.Cleanup(restore)
	return restore
}

func (o *OutageStore) check() error {
	if o.down.Load() {
		return fmt.Errorf("outage store: connection refused: %w", idempotency.ErrStoreUnavailable)
	}
	return nil
}

func (o *OutageStore) Acquire(ctx context.Context, key, fp string, lease time.Duration) (idempotency.AcquireResult, error) {
	if err := o.check(); err != nil {
		return idempotency.AcquireResult{}, err
	}
	return o.Store.Acquire(ctx, key, fp, lease)
}

func (o *OutageStore) Complete(ctx context.Context, key, token string, rec *idempotency.Record, retention time.Duration) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Complete(ctx, key, token, rec, retention)
}

func (o *OutageStore) Release(ctx context.Context, key, token string) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Release(ctx, key, token)
}

func (o *OutageStore) Extend(ctx context.Context, key, token string, lease time.Duration) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Extend(ctx, key, token, lease)
}

func (o *OutageStore) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	return o.Store.Get(ctx, key)
}

func (o *OutageStore) Delete(ctx context.Context, key string) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Delete(ctx, key)
}
