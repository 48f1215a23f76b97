package sqlstore_test

import (
	"context"
	"database/sql"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqlcore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func TestConformance(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		if tg.dialect == sqlstore.SQLite {
			// A file per case, as one process would have: cases sharing a
			// single connection would queue behind RaceOneWinner's 100
			// goroutines for longer than the suite's 150ms leases.
			storetest.Run(t, func(t *testing.T) idempotency.Store {
				url := tg.url(t)
				return open(t, url, sqlstore.Options{Table: newTable(t, url)})
			})
			return
		}
		// One store for all cases (keys are random per case), so the
		// connection count stays within a shared server's limit.
		url := tg.url(t)
		s := open(t, url, sqlstore.Options{Table: newTable(t, url)})
		storetest.Run(t, func(*testing.T) idempotency.Store { return s })
	})
}

func TestLongTransactionsRace(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table})
		// A pool of its own, so the transactions hold real connections
		// (the SQLite store's single one stays free for s).
		txs := open(t, url, sqlstore.Options{Table: table, MaxOpenConns: 4, ReapInterval: -1})
		bind := sqlcore.BindQuestion
		if tg.dialect == sqlstore.Postgres {
			bind = sqlcore.BindDollar
		}
		begin := func(ctx context.Context) (idempotency.Store, storetest.Tx, error) {
			tx, err := txs.DB().BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			ts, err := sqlcore.New(tx, sqlcore.Config{Dialect: tg.dialect, Bind: bind, Table: table})
			return ts, tx, err
		}
		storetest.LongTxRace(t, begin, s)
	})
}

func TestReaperRace(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table, ReapInterval: 2 * time.Millisecond, ReapBatch: 3})
		storetest.ReaperRace(t, s, func() int { return count(t, s.DB(), table) })
	})
}

func TestRestartBetweenClaimAndCompletion(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		storetest.Restart(t, func(t *testing.T) (idempotency.Store, func() error) {
			s := open(t, url, sqlstore.Options{Table: table})
			return s, s.Close
		})
	})
}

func TestCorruptRecord(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table, ReapInterval: -1})
		param := "?"
		if tg.dialect == sqlstore.Postgres {
			param = "$1"
		}
		storetest.CorruptRecord(t, s, func(ctx context.Context, column string, value any) error {
			_, err := s.DB().ExecContext(ctx, `UPDATE "`+table+`" SET `+column+` = `+param, value)
			return err
		}, tg.dialect == sqlstore.SQLite)
	})
}

func TestReapBoundedBatch(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table, ReapInterval: -1})
		ctx := context.Background()
		for range 7 {
			_, err := s.Acquire(ctx, storetest.NewClaim("fp", time.Millisecond, time.Millisecond), idempotency.AcquireOptions{})
			require.NoError(t, err)
		}
		_, err := s.Acquire(ctx, storetest.NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
		require.NoError(t, err)
		time.Sleep(10 * time.Millisecond)
		var got []int64
		for {
			n, err := s.Reap(ctx, 3)
			require.NoError(t, err)
			got = append(got, n)
			if n < 3 {
				break
			}
		}
		assert.Equal(t, []int64{3, 3, 1}, got, "batches of at most 3")
		assert.Equal(t, 1, count(t, s.DB(), table), "the live claim stays")
	})
}

func TestBadTableName(t *testing.T) {
	for _, name := range []string{"bad-name", "x; DROP TABLE users", `q"uote`, "Upper", "1st", "pg_keys", "sqlite_keys", strings.Repeat("a", 49)} {
		_, err := sqlstore.OpenURL(context.Background(), "sqlite://"+t.TempDir()+"/x.db", sqlstore.Options{Table: name})
		require.ErrorIs(t, err, sqlcore.ErrBadTable, name)
		assert.Contains(t, err.Error(), "table name", name)
		assert.Contains(t, err.Error(), strconv.Quote(name))
	}
	db, err := sql.Open("sqlite", t.TempDir()+"/y.db")
	require.NoError(t, err)
	defer db.Close()
	_, err = sqlstore.New(context.Background(), db, sqlstore.SQLite, sqlstore.Options{Table: "no spaces"})
	require.ErrorIs(t, err, sqlcore.ErrBadTable)
}

func TestSkipMigrationsUsesOwnDDL(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		// No table yet: a store that may not migrate fails, and says why.
		s := open(t, url, sqlstore.Options{Table: table, SkipMigrations: true, ReapInterval: -1})
		_, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
		require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
		ddl, err := sqlstore.DDL(tg.dialect, table)
		require.NoError(t, err)
		for _, stmt := range strings.SplitAfter(ddl, ";\n") {
			if strings.TrimSpace(stmt) != "" {
				_, err := s.DB().Exec(stmt)
				require.NoError(t, err, stmt)
			}
		}
		res, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
		require.NoError(t, err)
		assert.Equal(t, idempotency.Acquired, res.State)
		// Migrating over a hand-made schema is harmless.
		open(t, url, sqlstore.Options{Table: table, ReapInterval: -1})
	})
}

// Under REPEATABLE READ (a server default some teams set), a claim that
// loses to one committed after its snapshot fails to serialize. In
// autocommit the store retries it; inside a caller's transaction it cannot,
// and reports the failure. Never do both claims win.
func TestRepeatableRead(t *testing.T) {
	url := targets[0].url(t)
	table := newTable(t, url)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	rr := open(t, url+sep+"default_transaction_isolation=repeatable%20read", sqlstore.Options{Table: table, ReapInterval: -1})
	var level string
	require.NoError(t, rr.DB().QueryRow("SHOW default_transaction_isolation").Scan(&level))
	require.Equal(t, "repeatable read", level)

	t.Run("Autocommit", func(t *testing.T) {
		for range 3 {
			held := storetest.NewClaim("fp", time.Minute, time.Hour)
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := 0
			start := make(chan struct{})
			for range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					c := held
					c.Token = idempotency.NewToken()
					res, err := rr.Acquire(context.Background(), c, idempotency.AcquireOptions{})
					assert.NoError(t, err, "serialization failures are retried")
					mu.Lock()
					defer mu.Unlock()
					if res.State == idempotency.Acquired {
						won++
					}
				}()
			}
			close(start)
			wg.Wait()
			require.Equal(t, 1, won)
		}
	})
	t.Run("CallerTransactions", func(t *testing.T) {
		for range 3 {
			held := storetest.NewClaim("fp", time.Minute, time.Hour)
			var wg sync.WaitGroup
			errs := make([]error, 2)
			won := make([]bool, 2)
			start := make(chan struct{})
			for i := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tx, err := rr.DB().BeginTx(context.Background(), nil)
					if err != nil {
						errs[i] = err
						return
					}
					defer func() { _ = tx.Rollback() }()
					s, err := sqlcore.New(tx, sqlcore.Config{Dialect: sqlstore.Postgres, Bind: sqlcore.BindDollar, Table: table})
					if err != nil {
						errs[i] = err
						return
					}
					<-start
					c := held
					c.Token = idempotency.NewToken()
					res, err := s.Acquire(context.Background(), c, idempotency.AcquireOptions{})
					time.Sleep(50 * time.Millisecond)
					if err == nil {
						err = tx.Commit()
					}
					errs[i], won[i] = err, err == nil && res.State == idempotency.Acquired
				}()
			}
			close(start)
			wg.Wait()
			require.False(t, won[0] && won[1], "two winners")
			for _, err := range errs {
				if err != nil {
					require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
				}
			}
		}
	})
}

// A PostgreSQL that goes silent mid-statement must not hold a call past
// its context (pgx cancels the query and drops the connection).
func TestStalledServer(t *testing.T) {
	storetest.RunStalled(t, func(t *testing.T) storetest.Stalled {
		raw := testenv.Postgres(t)
		u, err := neturl.Parse(raw)
		require.NoError(t, err)
		proxy := testenv.StartStallProxy(t, u.Host)
		u.Host = proxy.Addr
		s := open(t, u.String(), sqlstore.Options{Table: newTable(t, raw), ReapInterval: -1})
		return storetest.Stalled{Store: s, Stall: proxy.Stall, Resume: proxy.Resume}
	})
}

// What the store says at start about restarts and failovers: the test
// server runs without fsync, so a crash can lose commits, and it says so;
// SQLite says nothing.
func TestDurabilityAtStart(t *testing.T) {
	raw := testenv.Postgres(t)
	s := open(t, raw, sqlstore.Options{Table: newTable(t, raw), ReapInterval: -1})
	summary, ok := s.Durability()
	assert.False(t, ok)
	assert.Contains(t, summary, "fsync=off")
	lite := open(t, "sqlite:"+t.TempDir()+"/d.db", sqlstore.Options{ReapInterval: -1})
	summary, ok = lite.Durability()
	assert.True(t, ok)
	assert.Empty(t, summary)
}
