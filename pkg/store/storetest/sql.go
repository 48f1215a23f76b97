package storetest

// The cases that matter for SQL stores beyond Run: claims racing inside
// long transactions, a reaper running while claims are taken, a store
// restarted between claim and completion (sql_corrupt.go: a stored row
// spoiled in place). sqlstore and gormstore run them; they take the
// store's transactions and table through small callbacks, so this package
// links no database driver.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Tx is a transaction a store is bound to.
type Tx interface {
	Commit() error
	Rollback() error
}

// BeginFunc begins a transaction on a connection of its own and returns a
// store whose statements run inside it. It is called from goroutines, so
// it reports failure by error, not through t.
type BeginFunc func(ctx context.Context) (idempotency.Store, Tx, error)

// hold is how long a transaction stays open after its claim.
const hold = 150 * time.Millisecond

// LongTxRace runs two claims of one key, each in its own transaction held
// open after the claim. Exactly one wins, whether the loser's claim waited
// on the winner's uncommitted row or ran after it; if the winner rolls
// back instead, the waiting claim wins. s is a store outside any
// transaction on the same table.
func LongTxRace(t *testing.T, begin BeginFunc, s idempotency.Store) {
	t.Run("BothCommit", func(t *testing.T) {
		first := NewClaim("fp", time.Minute, time.Hour)
		claims := []idempotency.Claim{first, another(first, "fp")}
		var wg sync.WaitGroup
		start := make(chan struct{})
		res := make([]idempotency.AcquireResult, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ts, tx, err := begin(ctx(t))
				if err != nil {
					errs[i] = err
					return
				}
				res[i], errs[i] = ts.Acquire(ctx(t), claims[i], idempotency.AcquireOptions{})
				time.Sleep(hold)
				errs[i] = errors.Join(errs[i], tx.Commit())
			}()
		}
		close(start)
		wg.Wait()
		require.NoError(t, errors.Join(errs...))
		outcomes := []string{res[0].State.String(), res[1].State.String()}
		require.ElementsMatch(t, []string{"acquired", "in_flight"}, outcomes, "exactly one transaction may win")
		winner := claims[0]
		if res[0].State != idempotency.Acquired {
			winner = claims[1]
		}
		got, err := s.Acquire(ctx(t), another(winner, "fp"), idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.Equal(t, idempotency.InFlight, got.State, "the committed claim holds")
		require.NoError(t, s.Complete(ctx(t), winner, sampleRecord()))
	})
	t.Run("WinnerRollsBack", func(t *testing.T) {
		wonClaim := NewClaim("fp", time.Minute, time.Hour)
		lateClaim := another(wonClaim, "fp")
		first, tx, err := begin(ctx(t))
		require.NoError(t, err)
		defer func() { _ = tx.Rollback() }() // if a check fails first
		won, err := first.Acquire(ctx(t), wonClaim, idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.Equal(t, idempotency.Acquired, won.State)
		done := make(chan struct{})
		var late idempotency.AcquireResult
		var lateErr error
		go func() {
			defer close(done)
			ts, tx2, err := begin(ctx(t))
			if err != nil {
				lateErr = err
				return
			}
			late, lateErr = ts.Acquire(ctx(t), lateClaim, idempotency.AcquireOptions{})
			lateErr = errors.Join(lateErr, tx2.Commit())
		}()
		time.Sleep(hold) // the second claim is now waiting on the first row
		require.NoError(t, tx.Rollback())
		<-done
		require.NoError(t, lateErr)
		require.Equal(t, idempotency.Acquired, late.State, "a rolled-back claim never happened")
		require.ErrorIs(t, s.Complete(ctx(t), wonClaim, sampleRecord()), idempotency.ErrLeaseLost)
		require.NoError(t, s.Complete(ctx(t), lateClaim, sampleRecord()))
	})
}

// ReaperRace takes over expired claims while s's reaper runs (configure
// it to run every few milliseconds in small batches). A reaper that
// deleted a live row, or a takeover it raced, would make a live token's
// Complete fail. rows counts the rows physically in the table; once all
// garbage has expired the reaper must leave only the completed records.
func ReaperRace(t *testing.T, s idempotency.Store, rows func() int) {
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				c := ctx(t)
				if _, err := s.Acquire(c, NewClaim("garbage", time.Millisecond, time.Millisecond), takeover); !assert.NoError(t, err) {
					return
				}
				old := NewClaim("fp", 20*time.Millisecond, 20*time.Millisecond)
				res, err := s.Acquire(c, old, takeover)
				if !assert.NoError(t, err) || !assert.Equal(t, idempotency.Acquired, res.State) {
					return
				}
				time.Sleep(25 * time.Millisecond)
				cur := another(old, "fp")
				cur.Lease, cur.Retention = time.Minute, time.Hour
				res, err = s.Acquire(c, cur, takeover)
				if !assert.NoError(t, err) || !assert.Equal(t, idempotency.Acquired, res.State, "an expired claim is taken over") {
					return
				}
				assert.ErrorIs(t, s.Complete(c, old, sampleRecord()), idempotency.ErrLeaseLost)
				assert.NoError(t, s.Complete(c, cur, sampleRecord()), "the reaper must not touch a live claim")
				got, err := s.Acquire(c, another(cur, "fp"), takeover)
				assert.NoError(t, err)
				assert.Equal(t, idempotency.Completed, got.State)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	n := rows()
	for n != workers*rounds && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = rows()
	}
	assert.Equal(t, workers*rounds, n, "the reaper leaves exactly the live records")
}

// Restart claims a key on one store, closes it (and its pool), and
// completes the claim from a store opened afresh on the same table.
func Restart(t *testing.T, open func(t *testing.T) (idempotency.Store, func() error)) {
	held := NewClaim("fp", time.Minute, time.Hour)
	s1, close1 := open(t)
	res, err := s1.Acquire(ctx(t), held, idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Acquired, res.State)
	require.NoError(t, close1())
	_, err = s1.Acquire(ctx(t), NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
	require.ErrorIs(t, err, idempotency.ErrStoreUnavailable, "a closed store fails closed")

	s2, close2 := open(t)
	defer func() { require.NoError(t, close2()) }()
	got, err := s2.Acquire(ctx(t), another(held, "fp"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.InFlight, got.State, "the claim survived the restart")
	require.NoError(t, s2.Complete(ctx(t), held, sampleRecord()))
	got, err = s2.Acquire(ctx(t), another(held, "fp"), idempotency.AcquireOptions{})
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, got.State)
	assert.Equal(t, sampleRecord().Headers, got.Record.Headers)
}
