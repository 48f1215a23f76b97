package sqlcore

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// Dialect is the SQL flavour a Store speaks.
type Dialect int

const (
	// Postgres is PostgreSQL 9.5 or later (ON CONFLICT), 13+ tested.
	Postgres Dialect = iota + 1
	// SQLite is SQLite 3.24 or later (UPSERT).
	SQLite
)

func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case SQLite:
		return "sqlite"
	}
	return "dialect(" + strconv.Itoa(int(d)) + ")"
}

func (d Dialect) valid() bool { return d == Postgres || d == SQLite }

// Bind is how a driver wants statement parameters written.
type Bind int

const (
	// BindDollar writes $1, $2, … and reuses a number for a repeated
	// argument (PostgreSQL drivers).
	BindDollar Bind = iota + 1
	// BindQuestion writes ? in order and repeats a repeated argument
	// (SQLite drivers, and GORM, which rewrites ? for its dialect).
	BindQuestion
)

// MaxTableLen leaves room for the derived names "<table>_migrations" and
// "idx_<table>_expires_at" (GORM's index naming, so AutoMigrate finds it)
// inside PostgreSQL's 63-byte identifier limit.
const MaxTableLen = 48

// DefaultTable is the table name used when none is configured.
const DefaultTable = "gopotency_keys"

// ErrBadTable is returned for a table name that is not a plain identifier.
var ErrBadTable = errors.New("invalid table name")

// ValidateTable accepts 1 to MaxTableLen lower-case ASCII letters, digits
// and underscores, not starting with a digit. The name is spliced into SQL
// (identifiers cannot be bound as parameters), so anything else is refused
// rather than escaped. Lower case only, so PostgreSQL's case folding never
// makes the quoted and unquoted spellings differ.
func ValidateTable(name string) error {
	bad := len(name) == 0 || len(name) > MaxTableLen || (name[0] >= '0' && name[0] <= '9')
	for i := 0; i < len(name) && !bad; i++ {
		c := name[i]
		bad = !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_')
	}
	if bad {
		return fmt.Errorf("%w %q: use 1 to %d lower-case letters, digits and underscores, not starting with a digit", ErrBadTable, name, MaxTableLen)
	}
	if strings.HasPrefix(name, "pg_") || strings.HasPrefix(name, "sqlite_") {
		return fmt.Errorf("%w %q: the pg_ and sqlite_ prefixes are reserved by the databases", ErrBadTable, name)
	}
	return nil
}

// nowMillis is the database clock in unix milliseconds, stable within one
// statement in both dialects: PostgreSQL's statement_timestamp() is the
// time the statement arrived (unlike now(), it moves on inside a long
// transaction), and SQLite evaluates 'now' once per statement step. The
// SQLite form avoids floating point so no millisecond is lost to rounding.
var nowMillis = map[Dialect]string{
	Postgres: "CAST(floor(extract(epoch FROM statement_timestamp()) * 1000) AS BIGINT)",
	SQLite:   "(CAST(strftime('%s','now') AS INTEGER) * 1000 + CAST(substr(strftime('%f','now'), 4) AS INTEGER))",
}

// stmt is a statement compiled for one dialect, bind style and table.
type stmt struct {
	sql string
	// order maps placeholder i to argument order[i]; nil means the
	// arguments are passed as given.
	order []int
	// prepared caches the statement prepared on the Store's connection;
	// shared by copies of stmt.
	prepared *atomic.Pointer[sql.Stmt]
}

// args lays out a for the statement's placeholders.
func (s stmt) args(a ...any) []any {
	if s.order == nil {
		return a
	}
	out := make([]any, len(s.order))
	for i, k := range s.order {
		out[i] = a[k]
	}
	return out
}

// compile fills {TABLE} and {NOW} in tmpl and rewrites its $n parameters
// for bind style b.
func compile(tmpl string, d Dialect, b Bind, table string) stmt {
	s := strings.NewReplacer("{TABLE}", table, "{NOW}", nowMillis[d]).Replace(tmpl)
	if b == BindDollar {
		return stmt{sql: s, prepared: new(atomic.Pointer[sql.Stmt])}
	}
	var out strings.Builder
	order := []int{}
	for i := 0; i < len(s); i++ {
		c := s[i]
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if c != '$' || j == i+1 {
			out.WriteByte(c)
			continue
		}
		n, _ := strconv.Atoi(s[i+1 : j])
		// GORM expands a slice bound right after "(" into a list of its
		// elements; a space keeps a []byte argument whole.
		if i > 0 && s[i-1] == '(' {
			out.WriteByte(' ')
		}
		out.WriteByte('?')
		order = append(order, n-1)
		i = j - 1
	}
	return stmt{sql: out.String(), order: order, prepared: new(atomic.Pointer[sql.Stmt])}
}
