package idempotency

import (
	"fmt"
	"strings"
)

// maxKeyLength is the longest key accepted, in bytes after sf-string
// unescaping (Stripe's limit; the IETF draft leaves it to the server).
const maxKeyLength = 255

// parseKey parses an Idempotency-Key field value. Both forms in use are
// accepted: an RFC 9651 sf-string ("abc", as the IETF draft specifies) and a
// bare token (abc, as Stripe and most clients send). Anything else, an empty
// key, a key over maxKeyLength bytes, or control characters give an error
// wrapping ErrKeyMalformed that says what is wrong.
func parseKey(raw string) (string, error) {
	v := strings.Trim(raw, " \t") // optional whitespace around a field value
	if v == "" {
		return "", fmt.Errorf("%w: empty value", ErrKeyMalformed)
	}
	var key string
	var err error
	if v[0] == '"' {
		key, err = parseSFString(v)
	} else {
		key, err = parseToken(v)
	}
	if err != nil {
		return "", err
	}
	if key == "" {
		return "", fmt.Errorf("%w: empty value", ErrKeyMalformed)
	}
	if len(key) > maxKeyLength {
		return "", fmt.Errorf("%w: %d bytes, at most %d allowed", ErrKeyMalformed, len(key), maxKeyLength)
	}
	return key, nil
}

// parseSFString implements RFC 9651 §4.2.5: printable ASCII between DQUOTEs,
// with only \" and \\ as escapes, and nothing after the closing quote.
func parseSFString(v string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\':
			i++
			if i >= len(v) || (v[i] != '"' && v[i] != '\\') {
				return "", fmt.Errorf("%w: invalid escape in quoted string", ErrKeyMalformed)
			}
			b.WriteByte(v[i])
		case c == '"':
			if i != len(v)-1 {
				return "", fmt.Errorf("%w: characters after closing quote", ErrKeyMalformed)
			}
			return b.String(), nil
		case c < 0x20 || c > 0x7e:
			return "", fmt.Errorf("%w: character 0x%02x not allowed", ErrKeyMalformed, c)
		default:
			b.WriteByte(c)
		}
		if b.Len() > maxKeyLength {
			return "", fmt.Errorf("%w: longer than %d bytes", ErrKeyMalformed, maxKeyLength)
		}
	}
	return "", fmt.Errorf("%w: unterminated quoted string", ErrKeyMalformed)
}

// parseToken accepts RFC 9651 tokens and, for compatibility with clients that
// send UUIDs or base64 ids unquoted, any run of visible ASCII without
// whitespace, quotes, commas or semicolons (which would make the field a
// list or carry parameters).
func parseToken(v string) (string, error) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= 0x20 || c >= 0x7f {
			return "", fmt.Errorf("%w: character 0x%02x not allowed", ErrKeyMalformed, c)
		}
		switch c {
		case '"', ',', ';', '\\':
			return "", fmt.Errorf("%w: character %q not allowed in an unquoted key", ErrKeyMalformed, c)
		}
	}
	return v, nil
}
