package behaviortest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func wantOpLive(t testing.TB, r OpResult) {
	t.Helper()
	if r.Problem != "" || r.Replayed || r.Err != "" {
		t.Fatalf("want the handler's live answer, got %+v", r)
	}
}

func wantOpProblem(t testing.TB, r OpResult, slug string) {
	t.Helper()
	if r.Problem != slug {
		t.Fatalf("want the %s refusal, got %+v", slug, r)
	}
	if r.Replayed {
		t.Errorf("a refusal marked replayed: %+v", r)
	}
}

// wantOpReplayOf checks replay repeats first: reply, error, metadata.
func wantOpReplayOf(t testing.TB, first, replay OpResult) {
	t.Helper()
	if !replay.Replayed || replay.Problem != "" {
		t.Fatalf("want a replay, got %+v", replay)
	}
	if replay.Reply != first.Reply || replay.Err != first.Err {
		t.Errorf("replay %+v %q, first %+v %q", replay.Reply, replay.Err, first.Reply, first.Err)
	}
	if !maps.EqualFunc(first.Meta, replay.Meta, slices.Equal) {
		t.Errorf("replayed metadata %v, first %v", replay.Meta, first.Meta)
	}
}

func (s *opSuite) wantExecutions(t testing.TB, tag string, n int) {
	t.Helper()
	if got := s.target.Upstream.Executions(tag); got != n {
		t.Errorf("handler ran %d times for %s, want %d", got, tag, n)
	}
}

// wantRunsOnce sends c twice: the first answer is live, the second its
// replay, and the handler ran c once.
func (s *opSuite) wantRunsOnce(t testing.TB, c OpCall) {
	t.Helper()
	first := s.send(t, c)
	wantOpLive(t, first)
	wantOpReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, c.Request.Tag, 1)
}

func (s *opSuite) keyAbsent(t *testing.T) {
	t.Run("OptionalRoutePassesThrough", func(t *testing.T) {
		tag := s.id("absent-optional")
		for range 2 {
			wantOpLive(t, s.send(t, OpCall{Route: "optional", Request: OpRequest{Tag: tag, Input: "a"}}))
		}
		s.wantExecutions(t, tag, 2)
	})
	t.Run("RequiredRouteRejects", func(t *testing.T) {
		tag := s.id("absent-required")
		wantOpProblem(t, s.send(t, OpCall{Route: "required", Request: OpRequest{Tag: tag}}), "key-missing")
		s.wantExecutions(t, tag, 0)
	})
}

func (s *opSuite) noRoute(t *testing.T) {
	key := s.id("noroute")
	for range 2 {
		wantOpLive(t, s.send(t, keyed("plain", key, "a")))
	}
	s.wantExecutions(t, key, 2)
}

func (s *opSuite) malformedKey(t *testing.T) {
	forms := map[string][]string{"TooLong": {strings.Repeat("k", 256)}}
	for i, k := range s.target.MalformedKeys {
		forms[fmt.Sprintf("Transport%d", i)] = []string{k}
	}
	if s.target.MultipleKeys {
		forms["TwoKeys"] = []string{"abc", "def"}
	}
	for name, keys := range forms {
		t.Run(name, func(t *testing.T) {
			tag := s.id("malformed-" + name)
			c := OpCall{Route: "optional", Request: OpRequest{Tag: tag}}
			if len(keys) == 1 {
				c.Key = keys[0]
			} else {
				c.Keys = keys
			}
			wantOpProblem(t, s.send(t, c), "key-malformed")
			s.wantExecutions(t, tag, 0)
		})
	}
}

func (s *opSuite) maxLengthKey(t *testing.T) {
	key := s.id("max")
	key += strings.Repeat("m", 255-len(key))
	s.wantRunsOnce(t, keyed("optional", key, "a"))
}

func (s *opSuite) firstAndReplay(t *testing.T) {
	key := s.id("replay")
	c := keyed("optional", key, `{"amount":1250}`)
	first := s.send(t, c)
	wantOpLive(t, first)
	if first.Reply.Input != c.Request.Input || first.Reply.Tag != key {
		t.Errorf("handler answered %+v for %+v", first.Reply, c.Request)
	}
	for range 2 {
		wantOpReplayOf(t, first, s.send(t, c))
	}
	s.wantExecutions(t, key, 1)
}

// errorStored: an error that is an outcome replays as it was.
func (s *opSuite) errorStored(t *testing.T) {
	if !s.target.StoresErrors {
		t.Skip("the transport stores no error outcomes: return outcomes that must replay as values")
	}
	key := s.id("client-error")
	c := keyed("optional", key, "a")
	c.Request.Fail = FailClient
	first := s.send(t, c)
	if first.Err == "" || first.Problem != "" || first.Replayed {
		t.Fatalf("want the handler's error, got %+v", first)
	}
	wantOpReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, key, 1)
}

// errorsNotStored: a failure releases the key, so a retry runs again.
func (s *opSuite) errorsNotStored(t *testing.T) {
	key := s.id("server-error")
	c := keyed("optional", key, "a")
	c.Request.Fail = FailServer
	for range 2 {
		r := s.send(t, c)
		if r.Err == "" || r.Problem != "" || r.Replayed {
			t.Fatalf("want the handler's live error, got %+v", r)
		}
	}
	s.wantExecutions(t, key, 2)
}

// uncertainKeepsKey: after a failure that may have had its effect, the
// outcome is unknown: a retry is refused, never run.
func (s *opSuite) uncertainKeepsKey(t *testing.T) {
	key := s.id("uncertain")
	c := keyed("optional", key, "a")
	c.Request.Fail = FailUncertain
	if r := s.send(t, c); r.Err == "" || r.Problem != "" {
		t.Fatalf("want the handler's live error, got %+v", r)
	}
	wantOpProblem(t, s.send(t, c), "outcome-unknown")
	s.wantExecutions(t, key, 1)
}

func (s *opSuite) differentFingerprint(t *testing.T) {
	key := s.id("mismatch")
	c := keyed("optional", key, `{"amount":1}`)
	first := s.send(t, c)
	wantOpLive(t, first)
	other := keyed("optional", key, `{"amount":2}`)
	wantOpProblem(t, s.send(t, other), "key-reused")
	wantOpReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, key, 1)
}

func (s *opSuite) differentCaller(t *testing.T) {
	key := s.id("scope")
	c := func(scope string) OpCall {
		return OpCall{Route: "optional", Key: key, Scope: scope, Request: OpRequest{Tag: key + "/" + scope, Input: "a"}}
	}
	first := map[string]OpResult{}
	for _, scope := range []string{"alice", "bob", ""} {
		first[scope] = s.send(t, c(scope))
		wantOpLive(t, first[scope])
	}
	if first["alice"].Reply.Exec == first["bob"].Reply.Exec {
		t.Error("bob got alice's execution")
	}
	for _, scope := range []string{"alice", "bob", ""} {
		wantOpReplayOf(t, first[scope], s.send(t, c(scope)))
		s.wantExecutions(t, key+"/"+scope, 1)
	}
}

func (s *opSuite) responseOverCap(t *testing.T) {
	key := s.id("tombstone")
	c := keyed("small", key, "a")
	c.Request.Size = 2 * SmallCap
	first := s.send(t, c)
	wantOpLive(t, first)
	if len(first.Reply.Pad) != c.Request.Size {
		t.Errorf("caller got %d bytes of padding, want all %d", len(first.Reply.Pad), c.Request.Size)
	}
	for range 2 {
		wantOpProblem(t, s.send(t, c), "response-too-large")
	}
	s.wantExecutions(t, key, 1)
}

func (s *opSuite) requestOverCap(t *testing.T) {
	if !s.target.RequestCap {
		t.Skip("the front end caps no request size: the caller chooses what is fingerprinted")
	}
	key := s.id("bigrequest")
	wantOpProblem(t, s.send(t, keyed("small", key, strings.Repeat("x", SmallCap+1))), "request-too-large")
	s.wantExecutions(t, key, 0)
}

func (s *opSuite) storeUnavailable(t *testing.T) {
	if s.target.StoreOutage == nil {
		t.Skip("OpTarget.StoreOutage not set")
	}
	key := s.id("outage")
	c := keyed("optional", key, "a")
	restore := s.target.StoreOutage(t)
	r := s.send(t, c)
	restore()
	wantOpProblem(t, r, "store-unavailable")
	if r.RetryAfter < time.Second {
		t.Errorf("RetryAfter %v, want at least 1s", r.RetryAfter)
	}
	s.wantExecutions(t, key, 0)
	s.wantRunsOnce(t, c)
}

func (s *opSuite) startSlow(t *testing.T, c OpCall) <-chan outcome[OpResult] {
	t.Helper()
	ch := s.sendAsync(c)
	if !s.target.Upstream.WaitStarted(c.Request.Tag, 1, startTimeout) {
		t.Fatalf("%s did not reach the handler within %v", c.Request.Tag, startTimeout)
	}
	return ch
}

// inFlight is the shape of the in-flight rows, as the HTTP suite's: a call
// on route that runs for sleep starts, and once the handler runs it, during
// sends duplicates, returning the one that must replay the first (nil: a
// retry after the first finished). The first answers live and runs once.
func (s *opSuite) inFlight(t *testing.T, name, route string, sleep time.Duration, during func(c OpCall) *OpResult) {
	t.Parallel()
	key := s.id(name)
	c := keyed(route, key, "a")
	c.Request.Sleep = sleep
	firstCh := s.startSlow(t, c)
	replay := during(c)
	first := await(t, firstCh)
	wantOpLive(t, first)
	if replay == nil {
		r := s.send(t, c)
		replay = &r
	}
	wantOpReplayOf(t, first, *replay)
	s.wantExecutions(t, key, 1)
}

func (s *opSuite) inFlightConflict(t *testing.T) {
	s.inFlight(t, "inflight", "optional", 800*time.Millisecond, func(c OpCall) *OpResult {
		dup := s.send(t, c)
		wantOpProblem(t, dup, "request-in-progress")
		if dup.RetryAfter < time.Second {
			t.Errorf("RetryAfter %v, want at least 1s", dup.RetryAfter)
		}
		return nil
	})
}

func (s *opSuite) inFlightWait(t *testing.T) {
	s.inFlight(t, "wait", "wait", 400*time.Millisecond, func(c OpCall) *OpResult {
		dup := s.send(t, c)
		return &dup
	})
}

func (s *opSuite) slowPastLease(t *testing.T) {
	s.inFlight(t, "lease", "lease", 2*time.Second, func(c OpCall) *OpResult {
		for range 2 {
			time.Sleep(3 * ShortLease)
			wantOpProblem(t, s.send(t, c), "request-in-progress")
		}
		return nil
	})
}

// concurrency: ConcurrencyKeys keys, each called ConcurrencyDuplicates
// times at once on the wait route: one execution per key, one live answer,
// the rest replays of it. Every call goes at once (no connections to share).
func (s *opSuite) concurrency(t *testing.T) {
	concurrencyRow(t, duplicates[OpResult]{
		wave: ConcurrencyKeys,
		send: func(k int) (OpResult, error) {
			c := keyed("wait", s.id(fmt.Sprintf("conc-%d", k)), fmt.Sprintf(`{"k":%d}`, k))
			c.Request.Sleep = 20 * time.Millisecond
			return s.do(c)
		},
		ran: func(k int) int { return s.target.Upstream.Executions(s.id(fmt.Sprintf("conc-%d", k))) },
		differs: func(r, first OpResult) string {
			if r.Problem != "" || r.Err != "" || r.Reply != first.Reply {
				return fmt.Sprintf("want the reply of duplicate 0 %+v", first.Reply)
			}
			return ""
		},
		replayed: func(r OpResult) bool { return r.Replayed },
	})
}
