package behaviortest

import (
	"net/http"
	"strings"
	"testing"
)

// keyAbsent: without a key, an optional route passes the request through
// untouched (every request runs) and a required route answers 400.
func (s *suite) keyAbsent(t *testing.T) {
	t.Run("OptionalRoutePassesThrough", func(t *testing.T) {
		tag := s.id("absent-optional")
		c := call{path: "/optional/orders", tag: tag, body: `{"n":1}`}
		for range 2 {
			a := s.send(t, c)
			wantLive(t, a, http.StatusCreated)
			if e := echoOf(t, a); e.Body != c.body {
				t.Errorf("upstream read body %q, want %q", e.Body, c.body)
			}
			if len(a.header.Values("Set-Cookie")) != 2 {
				t.Errorf("pass-through lost Set-Cookie fields: %q", a.header.Values("Set-Cookie"))
			}
		}
		s.wantExecutions(t, tag, 2)
	})
	t.Run("RequiredRouteRejects", func(t *testing.T) {
		tag := s.id("absent-required")
		a := s.send(t, call{path: "/required/orders", tag: tag, body: `{"n":1}`})
		wantProblem(t, a, http.StatusBadRequest, "key-missing")
		s.wantExecutions(t, tag, 0)
	})
	t.Run("UnguardedMethodPassesThrough", func(t *testing.T) {
		tag := s.id("absent-get")
		a := s.send(t, call{method: http.MethodGet, path: "/required/orders", tag: tag})
		wantLive(t, a, http.StatusOK)
		s.wantExecutions(t, tag, 1)
	})
}

// malformedKey: a key that is neither an sf-string nor a token, too long,
// or sent twice is a 400 on any route; nothing runs.
func (s *suite) malformedKey(t *testing.T) {
	long := strings.Repeat("k", 256)
	forms := []struct {
		name string
		keys []string
	}{
		{"Space", []string{"ab cd"}},
		{"Tab", []string{"ab\tcd"}},
		{"NonASCII", []string{"clé-1"}},
		{"Comma", []string{"ab,cd"}},
		{"Parameter", []string{"abc;v=1"}},
		{"UnterminatedQuote", []string{`"abc`}},
		{"AfterClosingQuote", []string{`"abc"def`}},
		{"BadEscape", []string{`"a\bc"`}},
		{"EmptyQuoted", []string{`""`}},
		{"TooLongToken", []string{long}},
		{"TooLongQuoted", []string{`"` + long + `"`}},
		{"TwoFields", []string{"abc", "def"}},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			tag := s.id("malformed-" + f.name)
			a := s.send(t, call{path: "/optional/orders", keys: f.keys, tag: tag, body: `{"n":1}`})
			wantProblem(t, a, http.StatusBadRequest, "key-malformed")
			s.wantExecutions(t, tag, 0)
		})
	}
}

// keyForms: a quoted sf-string and a bare token are the same key, and a key
// of exactly 255 bytes is accepted.
func (s *suite) keyForms(t *testing.T) {
	t.Run("QuotedAndBareAreOneKey", func(t *testing.T) {
		key := s.id("forms")
		c := call{path: "/optional/orders", key: `"` + key + `"`, tag: key, body: `{"n":1}`}
		first := s.send(t, c)
		wantLive(t, first, http.StatusCreated)
		c.key = key
		wantReplayOf(t, first, s.send(t, c))
		s.wantExecutions(t, key, 1)
	})
	t.Run("MaxLength", func(t *testing.T) {
		key := s.id("max")
		key += strings.Repeat("m", 255-len(key))
		s.wantRunsOnce(t, call{path: "/optional/orders", key: key, tag: key, body: `{"n":1}`}, http.StatusCreated)
	})
}

// noRoute: paths under no route prefix get no idempotency, key or not.
func (s *suite) noRoute(t *testing.T) {
	key := s.id("noroute")
	c := call{path: "/plain/orders", key: key, tag: key, body: `{"n":1}`}
	for range 2 {
		wantLive(t, s.send(t, c), http.StatusCreated)
	}
	s.wantExecutions(t, key, 2)
}
