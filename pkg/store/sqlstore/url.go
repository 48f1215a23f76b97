package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite" (pure Go, no cgo)
)

// sqliteDefaults are applied to every SQLite connection unless the URL sets
// the same pragma or parameter: WAL so readers never block the writer, a
// busy timeout so a second process waits instead of failing, NORMAL sync
// (durable at each WAL checkpoint, the usual WAL setting), and immediate
// transactions so migrations take the write lock up front.
var sqliteDefaults = []struct{ key, pragma, value string }{
	{"_pragma", "busy_timeout", "busy_timeout(10000)"},
	{"_pragma", "journal_mode", "journal_mode(WAL)"},
	{"_pragma", "synchronous", "synchronous(NORMAL)"},
	{"_txlock", "", "immediate"},
}

// OpenURL opens a database by URL and returns a Store that owns the pool
// (Close closes it):
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (or postgresql://)
//	sqlite:///absolute/path/to/file.db
//	sqlite:relative/path/to/file.db
//
// A PostgreSQL URL goes to pgx unchanged, so every libpq parameter works
// (sslmode, search_path, application_name, …). A SQLite URL may carry
// modernc.org/sqlite parameters (_pragma=…, _txlock=…); the file is created
// if missing, its directory is not. "sqlite://x/…" is refused: x would be a
// host, which a file has not, so write sqlite:///abs or sqlite:rel.
func OpenURL(ctx context.Context, rawURL string, o Options) (*Store, error) {
	dialect, driver, dsn, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", dialect, err)
	}
	n := o.MaxOpenConns
	if n <= 0 {
		n = 16
		if dialect == SQLite {
			n = 1
		}
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlstore: connect to %s: %w", redact(rawURL), err)
	}
	s, err := New(ctx, db, dialect, o)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.owned = true
	s.checkDurability(ctx, dialect)
	if d, ok := s.Durability(); d != "" {
		log := o.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		level := slog.LevelInfo
		if !ok {
			level = slog.LevelWarn
		}
		log.Log(ctx, level, "sqlstore: durability: "+d)
	}
	return s, nil
}

// parseURL maps a store URL to a dialect, a database/sql driver name and
// that driver's data source name.
func parseURL(rawURL string) (Dialect, string, string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the whole URL, password included.
		return 0, "", "", fmt.Errorf("sqlstore: bad store URL: %w", errors.Unwrap(err))
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		return Postgres, "pgx", rawURL, nil
	case "sqlite":
	default:
		return 0, "", "", fmt.Errorf("sqlstore: unsupported URL scheme %q (want postgres://, postgresql:// or sqlite:)", u.Scheme)
	}
	p := u.Path
	switch {
	case u.Opaque != "":
		p = u.Opaque // sqlite:relative/path.db
	case u.Host != "":
		return 0, "", "", fmt.Errorf("sqlstore: sqlite URL %q names a host; write sqlite:///absolute/path.db or sqlite:relative/path.db", rawURL)
	}
	if p == "" || strings.HasSuffix(p, "/") || strings.ContainsRune(p, '?') {
		return 0, "", "", fmt.Errorf("sqlstore: sqlite URL %q does not name a file", rawURL)
	}
	q := u.Query()
	for _, d := range sqliteDefaults {
		if !hasSetting(q, d.key, d.pragma) {
			q.Add(d.key, d.value)
		}
	}
	return SQLite, "sqlite", p + "?" + q.Encode(), nil
}

// hasSetting reports whether q already sets key (for _pragma: that pragma).
func hasSetting(q url.Values, key, pragma string) bool {
	if pragma == "" {
		return q.Has(key)
	}
	for _, v := range q[key] {
		name, _, _ := strings.Cut(v, "(")
		name, _, _ = strings.Cut(name, "=")
		if strings.EqualFold(strings.TrimSpace(name), pragma) {
			return true
		}
	}
	return false
}

// redact hides a password in a URL for error messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
