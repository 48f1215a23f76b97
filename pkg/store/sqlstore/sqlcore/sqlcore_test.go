package sqlcore

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestHeadersRoundTrip(t *testing.T) {
	for _, hs := range [][]idempotency.Header{
		nil,
		{{Name: "Set-Cookie", Value: "a=1"}, {Name: "Set-Cookie", Value: "b=2"}, {Name: "X", Value: ""}},
		{{Name: "X-Bin", Value: "\x00\xff obs-text \x80"}, {Name: "", Value: strings.Repeat("v", 300)}},
	} {
		got, err := decodeHeaders(encodeHeaders(hs))
		require.NoError(t, err)
		assert.Equal(t, hs, got)
	}
}

func TestDecodeHeadersRejectsCorruption(t *testing.T) {
	good := encodeHeaders([]idempotency.Header{{Name: "A", Value: "b"}})
	for name, b := range map[string][]byte{
		"version":   append([]byte{2}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte{}, good...), 0),
		"count":     {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"overrun":   {1, 1, 50, 'a'},
	} {
		_, err := decodeHeaders(b)
		require.ErrorIs(t, err, errCorruptHeaders, name)
		require.ErrorIs(t, err, idempotency.ErrCorruptRecord, name)
	}
}

func FuzzDecodeHeaders(f *testing.F) {
	f.Add(encodeHeaders([]idempotency.Header{{Name: "A", Value: "b"}, {Name: "A", Value: "c"}}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, err := decodeHeaders(b)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip (the input may spell a
		// length in a longer varint than encodeHeaders writes).
		again, err := decodeHeaders(encodeHeaders(hs))
		if err != nil || len(again) != len(hs) {
			t.Fatalf("round trip of %x: %v, %d headers instead of %d", b, err, len(again), len(hs))
		}
		for i := range hs {
			if hs[i] != again[i] {
				t.Fatalf("round trip of %x changed header %d", b, i)
			}
		}
	})
}

func TestValidateTable(t *testing.T) {
	for _, ok := range []string{"gopotency_keys", "_x", "a1", strings.Repeat("a", MaxTableLen)} {
		assert.NoError(t, ValidateTable(ok), ok)
	}
	for _, bad := range []string{"", "1a", "A", "a-b", "a b", `a"b`, "a;b", "é", "pg_x", "sqlite_x", strings.Repeat("a", MaxTableLen+1)} {
		assert.ErrorIs(t, ValidateTable(bad), ErrBadTable, bad)
	}
}

func TestCompile(t *testing.T) {
	const tmpl = `SELECT {NOW} FROM "{TABLE}" WHERE a = $1 AND b IN ($2, $1) AND c = $10`
	d := compile(tmpl, Postgres, BindDollar, "t")
	assert.Equal(t, `SELECT `+nowMillis[Postgres]+` FROM "t" WHERE a = $1 AND b IN ($2, $1) AND c = $10`, d.sql)
	assert.Equal(t, []any{"a", "b"}, d.args("a", "b"), "dollar style passes arguments as given")

	q := compile(tmpl, SQLite, BindQuestion, "t")
	assert.Equal(t, `SELECT `+nowMillis[SQLite]+` FROM "t" WHERE a = ? AND b IN ( ?, ?) AND c = ?`, q.sql)
	args := make([]any, 10)
	for i := range args {
		args[i] = i + 1
	}
	assert.Equal(t, []any{1, 2, 1, 10}, q.args(args...), "question style repeats arguments in order")
}

// Every statement compiles to as many ? as its dollar form has distinct
// uses, and the argument lists line up.
func TestCompiledStatementsBalanced(t *testing.T) {
	for _, d := range []Dialect{Postgres, SQLite} {
		st := compileAll(d, BindQuestion, "t")
		for _, s := range st.all() {
			assert.Equal(t, strings.Count(s.sql, "?"), len(s.order), s.sql)
			assert.NotContains(t, s.sql, "{", s.sql)
			assert.NotContains(t, s.sql, "(?", "GORM would expand a []byte here: "+s.sql)
		}
	}
}

func TestMillis(t *testing.T) {
	assert.Equal(t, int64(0), millis(-time.Second))
	assert.Equal(t, int64(0), millis(0))
	assert.Equal(t, int64(1), millis(time.Microsecond), "a positive lease never rounds to zero")
	assert.Equal(t, int64(150), millis(150*time.Millisecond))
	assert.Equal(t, int64(2), millis(1500*time.Microsecond))
}

func TestMigrationsParse(t *testing.T) {
	for _, d := range []Dialect{Postgres, SQLite} {
		ms, err := loadMigrations(d, "t")
		require.NoError(t, err)
		require.NotEmpty(t, ms)
		for i, m := range ms {
			assert.Equal(t, i+1, m.version, "versions are 1, 2, … without gaps")
			for _, s := range m.stmts {
				assert.True(t, strings.HasSuffix(s, ";"), s)
				assert.NotContains(t, s, "{TABLE}")
			}
		}
	}
	_, err := loadMigrations(Postgres, "Bad")
	require.ErrorIs(t, err, ErrBadTable)
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(nil, Config{Dialect: 9, Bind: BindDollar})
	require.ErrorContains(t, err, "unsupported dialect")
	_, err = New(nil, Config{Dialect: SQLite})
	require.ErrorContains(t, err, "unsupported bind style")
	_, err = New(nil, Config{Dialect: SQLite, Bind: BindQuestion, Table: "x-y"})
	require.ErrorIs(t, err, ErrBadTable)
}
