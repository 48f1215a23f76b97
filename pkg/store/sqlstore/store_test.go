package sqlstore_test

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqlcore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqltest"
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
		begin := func(ctx context.Context) (idempotency.Store, sqltest.Tx, error) {
			tx, err := txs.DB().BeginTx(ctx, nil)
			if err != nil {
				return nil, nil, err
			}
			ts, err := sqlcore.New(tx, sqlcore.Config{Dialect: tg.dialect, Bind: bind, Table: table})
			return ts, tx, err
		}
		sqltest.LongTxRace(t, begin, s)
	})
}

func TestReaperRace(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table, ReapInterval: 2 * time.Millisecond, ReapBatch: 3})
		sqltest.ReaperRace(t, s, func() int { return count(t, s.DB(), table) })
	})
}

func TestRestartBetweenClaimAndCompletion(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		sqltest.Restart(t, func(t *testing.T) (idempotency.Store, func() error) {
			s := open(t, url, sqlstore.Options{Table: table})
			return s, s.Close
		})
	})
}

func TestReapBoundedBatch(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		url := tg.url(t)
		table := newTable(t, url)
		s := open(t, url, sqlstore.Options{Table: table, ReapInterval: -1})
		ctx := context.Background()
		for range 7 {
			_, err := s.Acquire(ctx, storetest.NewKey(), "fp", time.Millisecond)
			require.NoError(t, err)
		}
		live := storetest.NewKey()
		_, err := s.Acquire(ctx, live, "fp", time.Minute)
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
		_, err := s.Acquire(context.Background(), storetest.NewKey(), "fp", time.Minute)
		require.ErrorIs(t, err, idempotency.ErrStoreUnavailable)
		ddl, err := sqlstore.DDL(tg.dialect, table)
		require.NoError(t, err)
		for _, stmt := range strings.SplitAfter(ddl, ";\n") {
			if strings.TrimSpace(stmt) != "" {
				_, err := s.DB().Exec(stmt)
				require.NoError(t, err, stmt)
			}
		}
		res, err := s.Acquire(context.Background(), storetest.NewKey(), "fp", time.Minute)
		require.NoError(t, err)
		assert.Equal(t, idempotency.Acquired, res.Outcome)
		// Migrating over a hand-made schema is harmless.
		open(t, url, sqlstore.Options{Table: table, ReapInterval: -1})
	})
}
