package behaviortest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// firstAndReplay: the first request runs once and its answer reaches the
// client whole; a retry gets the stored answer without running.
func (s *suite) firstAndReplay(t *testing.T) {
	key := s.id("replay")
	c := call{path: "/optional/orders?currency=EUR", key: key, tag: key, body: `{"amount": 1250, "items": ["a", "b"]}`}
	first := s.send(t, c)
	t.Run("FirstRequest", func(t *testing.T) {
		wantLive(t, first, http.StatusCreated)
		s.wantExecutions(t, key, 1)
		e := echoOf(t, first)
		if e.Body != c.body || e.Target != c.path {
			t.Errorf("upstream saw target %q body %q, want %q %q", e.Target, e.Body, c.path, c.body)
		}
		if got := first.header.Values("Set-Cookie"); len(got) != 2 || !strings.HasPrefix(got[0], "session=") || !strings.HasPrefix(got[1], "theme=") {
			t.Errorf("Set-Cookie fields %q, want the upstream's two, apart and in order", got)
		}
		if got := first.header.Values("X-Multi"); !slices.Equal(got, []string{"first", "second"}) {
			t.Errorf("X-Multi %q, want [first second]", got)
		}
		if first.header.Get("Location") != fmt.Sprintf("/things/%d", e.Exec) {
			t.Errorf("Location %q does not match execution %d", first.header.Get("Location"), e.Exec)
		}
	})
	t.Run("Replay", func(t *testing.T) {
		for range 2 {
			wantReplayOf(t, first, s.send(t, c))
		}
		s.wantExecutions(t, key, 1)
	})
}

// clientErrorStored: 4xx answers other than 408 and 429 are outcomes like
// any other, stored and replayed.
func (s *suite) clientErrorStored(t *testing.T) {
	key := s.id("404")
	s.wantRunsOnce(t, call{path: "/optional/orders?status=404", key: key, tag: key, body: `{"n":1}`}, http.StatusNotFound)
}

// differentFingerprint: reusing a key for another body or path is a 422;
// nothing runs and the original record stays.
func (s *suite) differentFingerprint(t *testing.T) {
	key := s.id("mismatch")
	c := call{path: "/optional/orders", key: key, tag: key, body: `{"amount":1}`}
	first := s.send(t, c)
	wantLive(t, first, http.StatusCreated)
	for name, other := range map[string]call{
		"Body": {path: c.path, key: key, tag: key, body: `{"amount":2}`},
		"Path": {path: "/optional/refunds", key: key, tag: key, body: c.body},
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, s.send(t, other), http.StatusUnprocessableEntity, "key-reused")
		})
	}
	wantReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, key, 1)
}

// differentCaller: the same key from another caller (Authorization) is
// another key; no caller sees another's answer.
func (s *suite) differentCaller(t *testing.T) {
	key := s.id("scope")
	c := func(auth string) call {
		return call{path: "/optional/orders", key: key, auth: auth, tag: key + "/" + auth, body: `{"n":1}`}
	}
	alice := s.send(t, c("Bearer alice"))
	wantLive(t, alice, http.StatusCreated)
	bob := s.send(t, c("Bearer bob"))
	wantLive(t, bob, http.StatusCreated)
	anon := s.send(t, c(""))
	wantLive(t, anon, http.StatusCreated)
	if echoOf(t, alice).Exec == echoOf(t, bob).Exec {
		t.Error("bob got alice's execution")
	}
	wantReplayOf(t, alice, s.send(t, c("Bearer alice")))
	wantReplayOf(t, bob, s.send(t, c("Bearer bob")))
	for _, auth := range []string{"Bearer alice", "Bearer bob", ""} {
		s.wantExecutions(t, key+"/"+auth, 1)
	}
}

// notStored: 5xx, 408 and 429 answers are not stored and the key is
// released, so a retry runs again.
func (s *suite) notStored(t *testing.T) {
	for _, status := range []int{500, 503, 408, 429} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			key := s.id("status-" + strconv.Itoa(status))
			c := call{path: "/optional/orders?status=" + strconv.Itoa(status), key: key, tag: key, body: `{"n":1}`}
			wantLive(t, s.send(t, c), status)
			wantLive(t, s.send(t, c), status)
			s.wantExecutions(t, key, 2)
		})
	}
}

// responseOverCap: an answer bigger than the storage cap still reaches the
// client whole, but only a tombstone is stored: retries get 413, never a
// re-run.
func (s *suite) responseOverCap(t *testing.T) {
	key := s.id("tombstone")
	size := 2 * SmallCap
	c := call{path: "/small/export?size=" + strconv.Itoa(size), key: key, tag: key, body: `{"n":1}`}
	first := s.send(t, c)
	wantLive(t, first, http.StatusCreated)
	if len(first.body) != size {
		t.Errorf("client got %d bytes, want all %d", len(first.body), size)
	}
	for range 2 {
		wantProblem(t, s.send(t, c), http.StatusRequestEntityTooLarge, "response-too-large")
	}
	s.wantExecutions(t, key, 1)
}

// requestOverCap: a body bigger than the fingerprint cap is a 413; nothing
// runs.
func (s *suite) requestOverCap(t *testing.T) {
	key := s.id("bigrequest")
	c := call{path: "/small/orders", key: key, tag: key, body: `{"pad":"` + strings.Repeat("x", SmallCap) + `"}`}
	wantProblem(t, s.send(t, c), http.StatusRequestEntityTooLarge, "request-too-large")
	s.wantExecutions(t, key, 0)
}

// automaticKey: on an AutoKey route, a request without a key is keyed by
// its body and its caller: an identical body from the same caller replays,
// another body or another caller runs, and anonymous requests (no caller
// identity) are never deduplicated, so no caller gets another's answer.
func (s *suite) automaticKey(t *testing.T) {
	one, two, other, anon := s.id("auto-1"), s.id("auto-2"), s.id("auto-other"), s.id("auto-anon")
	user := "Bearer " + s.id("auto-user")
	c := call{path: "/auto/orders", tag: one, auth: user, body: fmt.Sprintf(`{"order":%q}`, one)}
	first := s.send(t, c)
	wantLive(t, first, http.StatusCreated)
	wantReplayOf(t, first, s.send(t, c))
	wantLive(t, s.send(t, call{path: "/auto/orders", tag: two, auth: user, body: fmt.Sprintf(`{"order":%q}`, two)}), http.StatusCreated)
	s.wantExecutions(t, one, 1)
	s.wantExecutions(t, two, 1)

	same := call{path: "/auto/orders", tag: other, auth: "Bearer " + s.id("auto-someone-else"), body: c.body}
	wantLive(t, s.send(t, same), http.StatusCreated)
	s.wantExecutions(t, other, 1)

	nobody := call{path: "/auto/orders", tag: anon, body: c.body}
	wantLive(t, s.send(t, nobody), http.StatusCreated)
	wantLive(t, s.send(t, nobody), http.StatusCreated)
	s.wantExecutions(t, anon, 2)
}

// storeUnavailable: with the store down, a keyed request fails closed with
// 503 and Retry-After and does not run; once the store is back, the same
// key runs.
func (s *suite) storeUnavailable(t *testing.T) {
	if s.outage == nil {
		t.Skip("Target.StoreOutage not set: the front end's own tests cover an unreachable store")
	}
	key := s.id("outage")
	c := call{path: "/optional/orders", key: key, tag: key, body: `{"n":1}`}
	restore := s.outage(t)
	a := s.send(t, c)
	restore()
	wantProblem(t, a, http.StatusServiceUnavailable, "store-unavailable")
	wantRetryAfter(t, a)
	s.wantExecutions(t, key, 0)
	s.wantRunsOnce(t, c, http.StatusCreated)
}
