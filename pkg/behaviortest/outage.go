package behaviortest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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

func (o *OutageStore) Acquire(ctx context.Context, c idempotency.Claim, opts idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	if err := o.check(); err != nil {
		return idempotency.AcquireResult{}, err
	}
	return o.Store.Acquire(ctx, c, opts)
}

func (o *OutageStore) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Complete(ctx, c, rec)
}

func (o *OutageStore) Release(ctx context.Context, c idempotency.Claim) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Release(ctx, c)
}

func (o *OutageStore) Extend(ctx context.Context, c idempotency.Claim) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Extend(ctx, c)
}

func (o *OutageStore) Get(ctx context.Context, key string) (*idempotency.Entry, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	return o.Store.Get(ctx, key)
}

func (o *OutageStore) Delete(ctx context.Context, key string, seen *idempotency.Entry) error {
	if err := o.check(); err != nil {
		return err
	}
	return o.Store.Delete(ctx, key, seen)
}
