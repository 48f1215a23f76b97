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

// inFlight is the shape of the in-flight rows: a keyed POST to path (whose
// query makes the upstream sleep) starts, and once the upstream runs it,
// during sends duplicates. during returns the duplicate that must replay
// the first, or nil for a retry sent after the first finished. The first
// answers live 201 and the upstream runs it once.
func (s *suite) inFlight(t *testing.T, name, path string, during func(c call) *answer) {
	t.Parallel()
	key := s.id(name)
	c := call{path: path, key: key, tag: key, body: `{"n":1}`}
	firstCh := s.startSlow(t, c)
	replay := during(c)
	first := wait(t, firstCh)
	wantLive(t, first, http.StatusCreated)
	if replay == nil {
		a := s.send(t, c)
		replay = &a
	}
	wantReplayOf(t, first, *replay)
	s.wantExecutions(t, key, 1)
}

// inFlightConflict: a retry while the first request runs gets 409 with
// Retry-After; once the first finishes, a retry replays it.
func (s *suite) inFlightConflict(t *testing.T) {
	s.inFlight(t, "inflight", "/optional/orders?sleep=800ms", func(c call) *answer {
		dup := s.send(t, c)
		wantProblem(t, dup, http.StatusConflict, "request-in-progress")
		wantRetryAfter(t, dup)
		return nil
	})
}

// inFlightWait: on a WaitInFlight route, a retry while the first request
// runs waits for it and replays its answer.
func (s *suite) inFlightWait(t *testing.T) {
	s.inFlight(t, "wait", "/wait/orders?sleep=400ms", func(c call) *answer {
		dup := s.send(t, c)
		return &dup
	})
}

// slowPastLease: a handler running several lease lengths keeps its lease
// (the front end renews it), so duplicates still get 409, never a second
// execution.
func (s *suite) slowPastLease(t *testing.T) {
	s.inFlight(t, "lease", "/lease/orders?sleep=2s", func(c call) *answer {
		for range 2 {
			time.Sleep(3 * ShortLease) // long past an unrenewed lease
			wantProblem(t, s.send(t, c), http.StatusConflict, "request-in-progress")
		}
		return nil
	})
}

// concurrency: ConcurrencyKeys keys, each sent ConcurrencyDuplicates times
// at once to the WaitInFlight route: exactly one execution per key, and
// every duplicate gets the same 201 (one live, the others replays). Keys go
// in waves of concurrencyWave, so every request of a wave has a connection
// of its own and the duplicates really are simultaneous.
func (s *suite) concurrency(t *testing.T) {
	concurrencyRow(t, duplicates[answer]{
		wave: concurrencyWave,
		send: func(k int) (answer, error) {
			key := s.id(fmt.Sprintf("conc-%d", k))
			return s.do(call{path: "/wait/orders?sleep=20ms", key: key, tag: key, body: fmt.Sprintf(`{"k":%d}`, k)})
		},
		ran: func(k int) int { return s.up.Executions(s.id(fmt.Sprintf("conc-%d", k))) },
		differs: func(a, first answer) string {
			if a.status != http.StatusCreated || !bytes.Equal(a.body, first.body) {
				return fmt.Sprintf("want 201 and the body of duplicate 0 %q", first.body)
			}
			return ""
		},
		replayed: func(a answer) bool { return a.header.Get(idempotency.ReplayedHeader) != "" },
	})
}

// duplicates is how the concurrency row reaches a suite's front end.
type duplicates[R any] struct {
	wave     int                     // keys sent at once
	send     func(k int) (R, error)  // sends key k once, from any goroutine
	ran      func(k int) int         // executions of key k
	differs  func(r, first R) string // what r lacks of duplicate 0's answer, or ""
	replayed func(r R) bool          // r came from the store
}

// concurrencyRow sends ConcurrencyKeys keys, each ConcurrencyDuplicates
// times at once (d.wave keys at a time), and checks each key ran once and
// every duplicate got duplicate 0's answer, exactly one of them live.
func concurrencyRow[R any](t *testing.T, d duplicates[R]) {
	const n, dups = ConcurrencyKeys, ConcurrencyDuplicates
	got := make([][]R, n)
	for first := 0; first < n; first += d.wave {
		errs := make(chan error, d.wave*dups)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for k := first; k < min(first+d.wave, n); k++ {
			got[k] = make([]R, dups)
			for i := range dups {
				wg.Go(func() {
					<-start
					r, err := d.send(k)
					if err != nil {
						errs <- err
					}
					got[k][i] = r
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
		if ran := d.ran(k); ran != 1 {
			t.Errorf("key %d ran %d times, want 1", k, ran)
			bad++
		}
		live := 0
		for i, r := range got[k] {
			if want := d.differs(r, got[k][0]); want != "" {
				t.Errorf("key %d duplicate %d: %+v; %s", k, i, r, want)
				bad++
			}
			if !d.replayed(r) {
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
