package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/store/sqlstore"
)

// target is a database the tests run against.
type target struct {
	name    string
	dialect sqlstore.Dialect
	// url returns a database URL; each call for SQLite is a new file.
	url func(tb testing.TB) string
}

var targets = []target{
	{"postgres", sqlstore.Postgres, func(tb testing.TB) string { return testenv.Postgres(tb) }},
	{"sqlite", sqlstore.SQLite, func(tb testing.TB) string { return "sqlite://" + filepath.Join(tb.TempDir(), "store.db") }},
}

// forEach runs fn once per target as a subtest.
func forEach(t *testing.T, fn func(t *testing.T, tg target)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) { fn(t, tg) })
	}
}

// newTable returns a table name no other test uses, and drops the table at
// the end of the test (a shared PostgreSQL outlives the test binary).
func newTable(tb testing.TB, url string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "t_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		if strings.HasPrefix(url, "sqlite:") {
			return // the file goes with the test's temporary directory
		}
		db, err := sql.Open("pgx", url)
		if err != nil {
			tb.Errorf("drop %s: %v", table, err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS "`+table+`", "`+table+`_migrations"`); err != nil {
			tb.Errorf("drop %s: %v", table, err)
		}
	})
	return table
}

// open opens a store on url and closes it at the end of the test.
func open(tb testing.TB, url string, o sqlstore.Options) *sqlstore.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sqlstore.OpenURL(ctx, url, o)
	if err != nil {
		tb.Fatalf("OpenURL: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// count returns the number of rows physically in table.
func count(tb testing.TB, db *sql.DB, table string) int {
	tb.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM "` + table + `"`).Scan(&n); err != nil {
		tb.Fatalf("count: %v", err)
	}
	return n
}
