package idempotency_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestParseKey(t *testing.T) {
	atMax := strings.Repeat("k", idempotency.MaxKeyLength)
	over := atMax + "k"
	cases := []struct {
		name, raw, want string
		errHas          string // "" means the key is accepted
	}{
		{name: "sf-string", raw: `"abc-123"`, want: "abc-123"},
		{name: "sf-string with space", raw: `"a b"`, want: "a b"},
		{name: "sf-string escaped quote", raw: `"a\"b"`, want: `a"b`},
		{name: "sf-string escaped backslash", raw: `"a\\b"`, want: `a\b`},
		{name: "sf-string comma and semicolon inside", raw: `"a,b;c"`, want: "a,b;c"},
		{name: "token", raw: "abc_123", want: "abc_123"},
		{name: "uuid token", raw: "8e03978e-40d5-43e8-bc93-6894a57f9324", want: "8e03978e-40d5-43e8-bc93-6894a57f9324"},
		{name: "base64 token", raw: "dGVzdA+/=", want: "dGVzdA+/="},
		{name: "surrounding whitespace", raw: " \t\"abc\" \t", want: "abc"},
		{name: "token with surrounding space", raw: "  abc ", want: "abc"},
		{name: "255 bytes token", raw: atMax, want: atMax},
		{name: "255 bytes sf-string", raw: `"` + atMax + `"`, want: atMax},
		{name: "256 bytes token", raw: over, errHas: "256 bytes"},
		{name: "256 bytes sf-string", raw: `"` + over + `"`, errHas: "longer than 255"},
		{name: "255 bytes after unescaping", raw: `"` + strings.Repeat(`\"`, 255) + `"`, want: strings.Repeat(`"`, 255)},
		{name: "empty", raw: "", errHas: "empty"},
		{name: "blank", raw: " \t ", errHas: "empty"},
		{name: "empty sf-string", raw: `""`, errHas: "empty"},
		{name: "control char in token", raw: "ab\x01c", errHas: "0x01"},
		{name: "control char in sf-string", raw: "\"ab\x7fc\"", errHas: "0x7f"},
		{name: "tab in sf-string", raw: "\"a\tb\"", errHas: "0x09"},
		{name: "newline", raw: "ab\nc", errHas: "0x0a"},
		{name: "space inside token", raw: "a b", errHas: "0x20"},
		{name: "unterminated quote", raw: `"abc`, errHas: "unterminated"},
		{name: "lone quote", raw: `"`, errHas: "unterminated"},
		{name: "escape at end", raw: `"abc\`, errHas: "invalid escape"},
		{name: "invalid escape", raw: `"a\nb"`, errHas: "invalid escape"},
		{name: "trailing garbage", raw: `"abc"def`, errHas: "after closing quote"},
		{name: "sf-string parameters", raw: `"abc";v=1`, errHas: "after closing quote"},
		{name: "list of sf-strings", raw: `"a", "b"`, errHas: "after closing quote"},
		{name: "token list", raw: "a,b", errHas: `','`},
		{name: "token parameters", raw: "a;v=1", errHas: `';'`},
		{name: "quote inside token", raw: `ab"c`, errHas: `'"'`},
		{name: "backslash in token", raw: `ab\c`, errHas: `'\\'`},
		{name: "non-ASCII token", raw: "clé", errHas: "0xc3"},
		{name: "non-ASCII sf-string", raw: `"clé"`, errHas: "0xc3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := idempotency.ParseKey(c.raw)
			if c.errHas == "" {
				require.NoError(t, err)
				assert.Equal(t, c.want, got)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, idempotency.ErrKeyMalformed)
			assert.Contains(t, err.Error(), c.errHas)
			assert.Empty(t, got)
		})
	}
}

// FuzzParseKey checks the parser's invariants on arbitrary input: it never
// panics, every accepted key is 1..255 bytes of printable ASCII, a token
// parses to itself, and an accepted key survives quoting as an sf-string.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`"abc"`, "abc", `"a\"b\\c"`, "8e03978e-40d5-43e8-bc93-6894a57f9324", `"`, `"a`, `""`, `"a"b`, "a,b", " x ", "\x00", "é", strings.Repeat("a", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key, err := idempotency.ParseKey(raw)
		if err != nil {
			if !errors.Is(err, idempotency.ErrKeyMalformed) {
				t.Fatalf("ParseKey(%q): error %v does not wrap ErrKeyMalformed", raw, err)
			}
			if key != "" {
				t.Fatalf("ParseKey(%q) returned key %q with an error", raw, key)
			}
			return
		}
		if len(key) < 1 || len(key) > idempotency.MaxKeyLength {
			t.Fatalf("ParseKey(%q) accepted %d bytes", raw, len(key))
		}
		for i := 0; i < len(key); i++ {
			if key[i] < 0x20 || key[i] > 0x7e {
				t.Fatalf("ParseKey(%q) accepted byte 0x%02x", raw, key[i])
			}
		}
		if trimmed := strings.Trim(raw, " \t"); trimmed[0] != '"' {
			if key != trimmed {
				t.Fatalf("token %q parsed to %q", trimmed, key)
			}
			if again, err := idempotency.ParseKey(key); err != nil || again != key {
				t.Fatalf("token %q does not round-trip: %q, %v", key, again, err)
			}
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		if again, err := idempotency.ParseKey(quoted); err != nil || again != key {
			t.Fatalf("key %q quoted as %s parses to %q, %v", key, quoted, again, err)
		}
	})
}
