package sqlcore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migrations are embedded SQL files, migrations/<dialect>/NNNN_name.sql,
// applied in order. A file is one or more statements, each ending with ";"
// at the end of a line; {TABLE} stands for the table name.
//
//go:embed migrations
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	stmts   []string
}

func loadMigrations(d Dialect, table string) ([]migration, error) {
	if !d.valid() {
		return nil, fmt.Errorf("unsupported dialect %v", d)
	}
	if err := ValidateTable(table); err != nil {
		return nil, err
	}
	dir := path.Join("migrations", d.String())
	entries, err := migrationFiles.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migrations: bad file name %q", e.Name())
		}
		b, err := migrationFiles.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		text := strings.ReplaceAll(string(b), "{TABLE}", table)
		ms = append(ms, migration{version: v, name: e.Name(), stmts: splitStatements(text)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// splitStatements cuts a script at lines ending with ";". Drivers differ on
// running several statements in one call, so each runs on its own.
func splitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(script) {
		cur.WriteString(line)
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// DDL returns the full schema of table as one script, for teams that
// manage schemas with their own tools (then skip Migrate).
func DDL(d Dialect, table string) (string, error) {
	ms, err := loadMigrations(d, table)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, m := range ms {
		for _, s := range m.stmts {
			b.WriteString(s)
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}

// Migrate brings table's schema up to date, recording applied versions in
// "<table>_migrations". It runs in one transaction and is safe to run from
// several processes at once: PostgreSQL runs serialise on a transaction
// advisory lock, SQLite runs on the database's write lock.
func Migrate(ctx context.Context, db *sql.DB, d Dialect, table string) (err error) {
	if table == "" {
		table = DefaultTable
	}
	ms, err := loadMigrations(d, table)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	if d == Postgres {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock("+strconv.FormatInt(lockID(table), 10)+")"); err != nil {
			return fmt.Errorf("migrate %s: lock: %w", table, err)
		}
	}
	versions := `"` + table + `_migrations"`
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+versions+" (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)"); err != nil {
		return fmt.Errorf("migrate %s: %w", table, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+versions).Scan(&current); err != nil {
		return fmt.Errorf("migrate %s: read version: %w", table, err)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		for _, s := range m.stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil && !alreadyAdded(d, s, err) {
				return fmt.Errorf("migrate %s: %s: %w", table, m.name, err)
			}
		}
		ins := "INSERT INTO " + versions + " (version, applied_at) VALUES (" + strconv.Itoa(m.version) + ", " + nowMillis[d] + ")"
		if _, err := tx.ExecContext(ctx, ins); err != nil {
			return fmt.Errorf("migrate %s: %s: %w", table, m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", table, err)
	}
	return nil
}

// lockID derives a stable advisory lock id from the table name.
func lockID(table string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("gopotency/sqlstore/migrate/" + table))
	return int64(h.Sum64())
}

// alreadyAdded reports an SQLite ADD COLUMN that failed because the column
// exists: SQLite has no ADD COLUMN IF NOT EXISTS, and a schema applied by
// hand from DDL (which records no versions) already has every column.
func alreadyAdded(d Dialect, stmt string, err error) bool {
	return d == SQLite && strings.Contains(strings.ToUpper(stmt), "ADD COLUMN") && strings.Contains(err.Error(), "duplicate column name")
}
