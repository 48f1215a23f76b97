package gormstore_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/gormstore"
	"github.com/gopotency/gopotency/pkg/store/sqlstore/sqlcore"
	"github.com/gopotency/gopotency/pkg/store/storetest"
)

func TestConformance(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		if tg.name == "sqlite" {
			// A file per case, as one process would have: cases sharing a
			// single connection would queue behind RaceOneWinner's 100
			// goroutines for longer than the suite's 150ms leases.
			storetest.Run(t, func(t *testing.T) idempotency.Store {
				db := openDB(t, tg, tg.dsn(t), tg.conns)
				return newStore(t, db, gormstore.Options{Table: newTable(t, db), AutoMigrate: true})
			})
			return
		}
		// One store for all cases (keys are random per case), so the
		// connection count stays within a shared server's limit.
		db := openDB(t, tg, tg.dsn(t), tg.conns)
		s := newStore(t, db, gormstore.Options{Table: newTable(t, db), AutoMigrate: true})
		storetest.Run(t, func(*testing.T) idempotency.Store { return s })
	})
}

// gormTx adapts a GORM transaction to storetest.Tx.
type gormTx struct{ db *gorm.DB }

func (t gormTx) Commit() error   { return t.db.Commit().Error }
func (t gormTx) Rollback() error { return t.db.Rollback().Error }

func TestLongTransactionsRace(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		dsn := tg.dsn(t)
		db := openDB(t, tg, dsn, tg.conns)
		table := newTable(t, db)
		s := newStore(t, db, gormstore.Options{Table: table, AutoMigrate: true})
		txs := openDB(t, tg, dsn, 4) // the transactions' own connections
		begin := func(ctx context.Context) (idempotency.Store, storetest.Tx, error) {
			tx := txs.WithContext(ctx).Begin()
			if tx.Error != nil {
				return nil, nil, tx.Error
			}
			ts, err := gormstore.New(ctx, tx, gormstore.Options{Table: table, ReapInterval: -1})
			return ts, gormTx{tx}, err
		}
		storetest.LongTxRace(t, begin, s)
	})
}

func TestReaperRace(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		db := openDB(t, tg, tg.dsn(t), tg.conns)
		table := newTable(t, db)
		s := newStore(t, db, gormstore.Options{Table: table, AutoMigrate: true, ReapInterval: 2 * time.Millisecond, ReapBatch: 3})
		storetest.ReaperRace(t, s, func() int {
			var n int64
			require.NoError(t, db.Table(table).Count(&n).Error)
			return int(n)
		})
	})
}

func TestRestartBetweenClaimAndCompletion(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		dsn := tg.dsn(t)
		table := newTable(t, openDB(t, tg, dsn, 1))
		storetest.Restart(t, func(t *testing.T) (idempotency.Store, func() error) {
			db, err := gorm.Open(tg.open(dsn), &gorm.Config{Logger: logger.Discard})
			require.NoError(t, err)
			sqlDB, err := db.DB()
			require.NoError(t, err)
			s := newStore(t, db, gormstore.Options{Table: table, AutoMigrate: true})
			return s, func() error { return errors.Join(s.Close(), sqlDB.Close()) }
		})
	})
}

func TestCorruptRecord(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		db := openDB(t, tg, tg.dsn(t), tg.conns)
		table := newTable(t, db)
		s := newStore(t, db, gormstore.Options{Table: table, AutoMigrate: true, ReapInterval: -1})
		storetest.CorruptRecord(t, s, func(ctx context.Context, column string, value any) error {
			return db.WithContext(ctx).Table(table).Where("1 = 1").Update(column, value).Error
		}, tg.name == "sqlite")
	})
}

func TestAutoMigrateIsOptIn(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		db := openDB(t, tg, tg.dsn(t), tg.conns)
		table := newTable(t, db)
		s := newStore(t, db, gormstore.Options{Table: table, ReapInterval: -1})
		_, err := s.Acquire(context.Background(), storetest.NewClaim("fp", time.Minute, time.Hour), idempotency.AcquireOptions{})
		require.ErrorIs(t, err, idempotency.ErrStoreUnavailable, "no table was created")
		assert.False(t, db.Migrator().HasTable(table))
	})
}

// The schema sqlstore's migrations create works with gormstore, and
// AutoMigrate over it is harmless: teams can move between the two.
func TestSQLSchemaCompatible(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		db := openDB(t, tg, tg.dsn(t), tg.conns)
		table := newTable(t, db)
		sqlDB, err := db.DB()
		require.NoError(t, err)
		dialect := sqlcore.SQLite
		if tg.name == "postgres" {
			dialect = sqlcore.Postgres
		}
		require.NoError(t, sqlcore.Migrate(context.Background(), sqlDB, dialect, table))
		s := newStore(t, db, gormstore.Options{Table: table, ReapInterval: -1})
		ctx := context.Background()
		held := storetest.NewClaim("fp", time.Minute, time.Hour)
		_, err = s.Acquire(ctx, held, idempotency.AcquireOptions{})
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, held, &idempotency.Record{Status: 200, Body: []byte("x")}))
		rec := &recorder{}
		s2 := newStore(t, db.Session(&gorm.Session{Logger: rec}), gormstore.Options{Table: table, AutoMigrate: true, ReapInterval: -1})
		for _, q := range rec.sql {
			verb, _, _ := strings.Cut(strings.TrimSpace(q), " ")
			assert.NotContains(t, []string{"ALTER", "CREATE", "DROP"}, strings.ToUpper(verb), "AutoMigrate changed the SQL schema: %s", q)
		}
		retry := held
		retry.Token = idempotency.NewToken()
		got, err := s2.Acquire(ctx, retry, idempotency.AcquireOptions{})
		require.NoError(t, err)
		assert.Equal(t, idempotency.Completed, got.State)
	})
}

func TestBadTableName(t *testing.T) {
	db := openDB(t, targets[1], targets[1].dsn(t), 1)
	for _, name := range []string{"bad-name", "x; DROP TABLE users", "Upper", "1st", strings.Repeat("a", 49)} {
		_, err := gormstore.New(context.Background(), db, gormstore.Options{Table: name, AutoMigrate: true})
		require.ErrorIs(t, err, sqlcore.ErrBadTable, name)
		assert.Contains(t, err.Error(), strconv.Quote(name))
	}
}

// otherDialect is SQLite under another name, as an unsupported database.
type otherDialect struct{ gorm.Dialector }

func (otherDialect) Name() string { return "mysql" }

func TestUnsupportedDialect(t *testing.T) {
	db, err := gorm.Open(otherDialect{sqlite.Open(t.TempDir() + "/x.db")}, &gorm.Config{})
	require.NoError(t, err)
	_, err = gormstore.New(context.Background(), db, gormstore.Options{})
	require.ErrorContains(t, err, `unsupported dialect "mysql"`)
}

// recorder is a GORM logger that keeps the statements it sees.
type recorder struct {
	mu  sync.Mutex
	sql []string
}

func (r *recorder) LogMode(logger.LogLevel) logger.Interface { return r }
func (r *recorder) Info(context.Context, string, ...any)     {}
func (r *recorder) Warn(context.Context, string, ...any)     {}
func (r *recorder) Error(context.Context, string, ...any)    {}
func (r *recorder) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	q, _ := fc()
	r.mu.Lock()
	r.sql = append(r.sql, q)
	r.mu.Unlock()
}
