package gormstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/gormstore"
)

// target is a database the tests run against through GORM.
type target struct {
	name string
	// dsn returns a data source name; each call for SQLite is a new file.
	dsn  func(tb testing.TB) string
	open func(dsn string) gorm.Dialector
	// conns sizes the pool: one SQLite writer, as sqlstore does.
	conns int
}

var targets = []target{
	{"postgres", func(tb testing.TB) string { return testenv.Postgres(tb) }, postgres.Open, 16},
	{"sqlite", func(tb testing.TB) string {
		return filepath.Join(tb.TempDir(), "store.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	}, sqlite.Open, 1},
}

func forEach(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { fn(t, tg) })
	}
}

// openDB opens a *gorm.DB with a pool of conns and closes it at the end.
func openDB(tb testing.TB, tg target, dsn string, conns int) *gorm.DB {
	tb.Helper()
	db, err := gorm.Open(tg.open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		tb.Fatalf("gorm.Open: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		tb.Fatal(err)
	}
	sqlDB.SetMaxOpenConns(conns)
	sqlDB.SetMaxIdleConns(conns)
	tb.Cleanup(func() { _ = sqlDB.Close() })
	return db
}

// newTable returns a table name no other test uses and drops it (and
// anything a migration made beside it) at the end of the test.
func newTable(tb testing.TB, db *gorm.DB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "t_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := db.WithContext(ctx).Migrator().DropTable(table, table+"_migrations"); err != nil {
			tb.Errorf("drop %s: %v", table, err)
		}
	})
	return table
}

// newStore opens a store on db with AutoMigrate and closes it at the end.
func newStore(tb testing.TB, db *gorm.DB, o gormstore.Options) *gormstore.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := gormstore.New(ctx, db, o)
	if err != nil {
		tb.Fatalf("gormstore.New: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
