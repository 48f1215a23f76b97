package sqlstore

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in, driver, path string
		dialect          Dialect
	}{
		{"postgres://u:p@127.0.0.1:5432/db?sslmode=disable", "pgx", "", Postgres},
		{"postgresql://127.0.0.1/db", "pgx", "", Postgres},
		{"sqlite:///var/lib/x/keys.db", "sqlite", "/var/lib/x/keys.db", SQLite},
		{"sqlite:/abs.db", "sqlite", "/abs.db", SQLite},
		{"sqlite:rel/keys.db", "sqlite", "rel/keys.db", SQLite},
		{"sqlite:///tmp/a%20b.db", "sqlite", "/tmp/a b.db", SQLite},
	} {
		d, driver, dsn, err := parseURL(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.dialect, d, c.in)
		assert.Equal(t, c.driver, driver, c.in)
		if d == Postgres {
			assert.Equal(t, c.in, dsn, "PostgreSQL URLs go to pgx unchanged")
			continue
		}
		path, query, _ := cutQuery(dsn)
		assert.Equal(t, c.path, path, c.in)
		assert.ElementsMatch(t, []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(NORMAL)"}, query["_pragma"], c.in)
		assert.Equal(t, "immediate", query.Get("_txlock"), c.in)
	}
}

func TestParseURLKeepsCallerSettings(t *testing.T) {
	_, _, dsn, err := parseURL("sqlite:///x.db?_pragma=journal_mode(DELETE)&_txlock=deferred&_pragma=foreign_keys(1)")
	require.NoError(t, err)
	_, q, _ := cutQuery(dsn)
	assert.ElementsMatch(t, []string{"journal_mode(DELETE)", "foreign_keys(1)", "busy_timeout(10000)", "synchronous(NORMAL)"}, q["_pragma"])
	assert.Equal(t, []string{"deferred"}, q["_txlock"])
}

func TestParseURLErrors(t *testing.T) {
	for in, want := range map[string]string{
		"mysql://h/db":            "unsupported URL scheme",
		"sqlite://relative/x.db":  "names a host",
		"sqlite://":               "does not name a file",
		"sqlite:///":              "does not name a file",
		"sqlite:///dir/":          "does not name a file",
		"sqlite:///a%3Fb.db":      "does not name a file",
		"postgres://u:secret@h:x": "bad store URL",
		"":                        "unsupported URL scheme",
	} {
		_, _, _, err := parseURL(in)
		require.ErrorContains(t, err, want, in)
		assert.NotContains(t, err.Error(), "secret", "errors never show a password")
	}
}

// cutQuery splits a SQLite DSN; parseURL refuses paths holding "?".
func cutQuery(dsn string) (string, url.Values, error) {
	path, raw, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(raw)
	return path, q, err
}
