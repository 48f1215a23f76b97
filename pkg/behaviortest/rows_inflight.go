package behaviortest

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// startTimeout bounds the wait for a request to reach the upstream.
const startTimeout = 10 * time.Second

// concurrencyWave is how many keys of the concurrency row go at once: 250
// requests, within the default client's 256 connections.
const concurrencyWave = 25

// startSlow sends c (whose query makes the upstream sleep) and returns once
// the upstream has started running it.
func (s *suite) startSlow(t *testing.T, c call) <-chan result {
	t.Helper()
	ch := s.sendAsync(c)
	if !s.up.WaitStarted(c.tag, 1, startTimeout) {
		t.Fatalf("%s did not reach the upstream within %v", c.path, startTimeout)
	}
	return ch
}

// inFlightConflict: a retry while the first request runs gets 409 with
// Retry-After; once the first finishes, a retry replays it.
func (s *suite) inFlightConflict(t *testing.T) {
	t.Parallel()
	key := s.id("inflight")
	c := call{path: "/optional/orders?sleep=800ms", key: key, tag: key, body: `{"n":1}`}
	firstCh := s.startSlow(t, c)
	dup := s.send(t, c)
	wantProblem(t, dup, http.StatusConflict, "request-in-progress")
	wantRetryAfter(t, dup)
	first := wait(t, firstCh)
	wantLive(t, first, http.StatusCreated)
	wantReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, key, 1)
}

// inFlightWait: on a WaitInFlight route, a retry while the first request
// runs waits for it and replays its answer.
func (s *suite) inFlightWait(t *testing.T) {
	t.Parallel()
	key := s.id("wait")
	c := call{path: "/wait/orders?sleep=400ms", key: key, tag: key, body: `{"n":1}`}
	firstCh := s.startSlow(t, c)
	dup := s.send(t, c)
	first := wait(t, firstCh)
	wantLive(t, first, http.StatusCreated)
	wantReplayOf(t, first, dup)
	s.wantExecutions(t, key, 1)
}

// slowPastLease: a handler running several lease lengths keeps its lease
// (the front end renews it), so duplicates still get 409, never a second
// execution.
func (s *suite) slowPastLease(t *testing.T) {
	t.Parallel()
	key := s.id("lease")
	c := call{path: "/lease/orders?sleep=2s", key: key, tag: key, body: `{"n":1}`}
	firstCh := s.startSlow(t, c)
	for range 2 {
		time.Sleep(3 * ShortLease) // long past an unrenewed lease
		wantProblem(t, s.send(t, c), http.StatusConflict, "request-in-progress")
	}
	first := wait(t, firstCh)
	wantLive(t, first, http.StatusCreated)
	wantReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, key, 1)
}

// concurrency: ConcurrencyKeys keys, each sent ConcurrencyDuplicates times
// at once to the WaitInFlight route: exactly one execution per key, and
// every duplicate gets the same 201 (one live, the others replays). Keys go
// in waves of concurrencyWave, so every request of a wave has a connection
// of its own and the duplicates really are simultaneous.
func (s *suite) concurrency(t *testing.T) {
	const n, dups = ConcurrencyKeys, ConcurrencyDuplicates
	answers := make([][]answer, n)
	for first := 0; first < n; first += concurrencyWave {
		errs := make(chan error, concurrencyWave*dups)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for k := first; k < min(first+concurrencyWave, n); k++ {
			answers[k] = make([]answer, dups)
			key := s.id(fmt.Sprintf("conc-%d", k))
			c := call{path: "/wait/orders?sleep=20ms", key: key, tag: key, body: fmt.Sprintf(`{"k":%d}`, k)}
			for d := range dups {
				wg.Go(func() {
					<-start
					a, err := s.do(c)
					if err != nil {
						errs <- err
					}
					answers[k][d] = a
				})
			}
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	bad := 0
	for k := range n {
		key := s.id(fmt.Sprintf("conc-%d", k))
		if got := s.up.Executions(key); got != 1 {
			t.Errorf("key %d ran %d times, want 1", k, got)
			bad++
		}
		live := 0
		for d, a := range answers[k] {
			if a.status != http.StatusCreated || !bytes.Equal(a.body, answers[k][0].body) {
				t.Errorf("key %d duplicate %d: %v; want 201 and the body of duplicate 0 %q", k, d, a, answers[k][0].body)
				bad++
			}
			if a.header.Get(idempotency.ReplayedHeader) == "" {
				live++
			}
		}
		if live != 1 {
			t.Errorf("key %d: %d live answers, want 1 (the rest replays)", k, live)
			bad++
		}
		if bad > 10 {
			t.Fatal("too many failures; stopping")
		}
	}
}
