package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// SpoilFunc sets column to value in every row of the store's table.
type SpoilFunc func(ctx context.Context, column string, value any) error

// CorruptRecord completes one key in s (alone in its table), spoils the
// stored row through spoil and checks that Acquire and Get report
// ErrCorruptRecord and not ErrStoreUnavailable: the request may already
// have run, so even a fail-open engine must not run it again. A store on a
// dynamically typed database (SQLite) also gets a value of the wrong type,
// which only shows when the row is scanned.
func CorruptRecord(t *testing.T, s idempotency.Store, spoil SpoilFunc, dynamic bool) {
	spoils := []struct {
		column string
		value  any
	}{{"headers", []byte{2, 0}}, {"mark", 99}}
	if dynamic {
		spoils = append(spoils, struct {
			column string
			value  any
		}{"status", "not a number"})
	}
	for _, sp := range spoils {
		t.Run(sp.column, func(t *testing.T) {
			c := NewClaim("fp", time.Minute, time.Hour)
			key := c.Key
			_, err := s.Acquire(ctx(t), c, idempotency.AcquireOptions{})
			require.NoError(t, err)
			require.NoError(t, s.Complete(ctx(t), c, sampleRecord()))
			require.NoError(t, spoil(ctx(t), sp.column, sp.value))

			_, err = s.Acquire(ctx(t), another(c, "fp"), idempotency.AcquireOptions{})
			require.ErrorIs(t, err, idempotency.ErrCorruptRecord, "acquire")
			assert.NotErrorIs(t, err, idempotency.ErrStoreUnavailable, "acquire: a corrupt record must not fail open")
			_, err = s.Get(ctx(t), key)
			require.ErrorIs(t, err, idempotency.ErrCorruptRecord, "get")
			assert.NotErrorIs(t, err, idempotency.ErrStoreUnavailable, "get: a corrupt record must not fail open")

			require.NoError(t, s.Delete(ctx(t), key, nil), "a corrupt entry can still be purged")
		})
	}
}
