package stdhttp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// counting is a handler answering 201 with its execution number.
type counting struct{ n atomic.Int32 }

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := c.n.Add(1)
	w.Header().Set("X-Result", strconv.Itoa(int(n)))
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, "run "+strconv.Itoa(int(n)))
}

func newStore(t *testing.T) *memstore.Store {
	t.Helper()
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustNew(t *testing.T, opts ...stdhttp.Option) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := stdhttp.New(newStore(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := stdhttp.New(nil); err == nil {
		t.Error("nil store accepted")
	}
	p := idempotency.DefaultPolicy()
	p.Lease = 0
	_, err := stdhttp.New(newStore(t), stdhttp.WithPolicy(&p))
	if err == nil || !strings.Contains(err.Error(), "lease") {
		t.Errorf("invalid policy: err = %v, want the lease problem", err)
	}
}

func TestReplaySkipsHandler(t *testing.T) {
	h := &counting{}
	srv := mustNew(t)(h)
	first := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k1")
	again := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k1")
	if first.Code != 201 || again.Code != 201 || again.Body.String() != "run 1" || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("first %d %q, again %d %q %v", first.Code, first.Body, again.Code, again.Body, again.Header())
	}
	if again.Header().Get("Content-Length") != "5" {
		t.Errorf("replay Content-Length %q, want 5", again.Header().Get("Content-Length"))
	}
	if h.n.Load() != 1 {
		t.Errorf("handler ran %d times", h.n.Load())
	}
}

// Fields outer middleware set before the handler ran are theirs: a replay
// carries the outer middleware's fresh values, not the first request's.
func TestOuterHeadersNotRecorded(t *testing.T) {
	var id atomic.Int32
	inner := mustNew(t)(&counting{})
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", strconv.Itoa(int(id.Add(1))))
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		inner.ServeHTTP(w, r)
	})
	behaviortest.Post(outer, "/pay", "Idempotency-Key", "k", "Origin", "https://a.example")
	again := behaviortest.Post(outer, "/pay", "Idempotency-Key", "k", "Origin", "https://b.example")
	h := again.Header()
	if h.Get("Idempotent-Replayed") != "true" || h.Get("X-Result") != "1" {
		t.Fatalf("not a replay of run 1: %v", h)
	}
	if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] != "2" {
		t.Errorf("X-Request-Id %q, want the outer middleware's fresh [2]", got)
	}
	if got := h.Get("Access-Control-Allow-Origin"); got != "https://b.example" {
		t.Errorf("Access-Control-Allow-Origin %q, want this request's origin", got)
	}
}

func TestPolicyFunc(t *testing.T) {
	required := idempotency.DefaultPolicy()
	required.KeyRequired = true
	h := &counting{}
	srv := mustNew(t, stdhttp.WithPolicyFunc(func(r *http.Request) *idempotency.Policy {
		if strings.HasPrefix(r.URL.Path, "/payments/") {
			return &required
		}
		return nil
	}))(h)
	if rec := behaviortest.Post(srv, "/payments/1"); rec.Code != http.StatusBadRequest {
		t.Errorf("guarded route without key: %d, want 400", rec.Code)
	}
	for range 2 {
		if rec := behaviortest.Post(srv, "/other", "Idempotency-Key", "k"); rec.Code != 201 || rec.Header().Get("Idempotent-Replayed") != "" {
			t.Errorf("unguarded route: %d %v, want the handler's answer", rec.Code, rec.Header())
		}
	}
	if h.n.Load() != 2 {
		t.Errorf("handler ran %d times, want 2", h.n.Load())
	}
}

func TestKeyFunc(t *testing.T) {
	h := &counting{}
	srv := mustNew(t, stdhttp.WithKeyFunc(func(r *http.Request) (string, bool) {
		k := r.URL.Query().Get("op")
		return k, k != ""
	}))(h)
	behaviortest.Post(srv, "/pay?op=abc")
	if rec := behaviortest.Post(srv, "/pay?op=abc"); rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("same key from the key func not replayed: %v", rec.Header())
	}
	// Without a key from the function, the header still counts.
	behaviortest.Post(srv, "/pay", "Idempotency-Key", "hdr")
	if rec := behaviortest.Post(srv, "/pay", "Idempotency-Key", "hdr"); rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("header key not used as fallback: %v", rec.Header())
	}
	if rec := behaviortest.Post(srv, "/pay?op=a%20b"); rec.Code != http.StatusBadRequest {
		t.Errorf("malformed key from the key func: %d, want 400", rec.Code)
	}
	if h.n.Load() != 2 {
		t.Errorf("handler ran %d times, want 2", h.n.Load())
	}
}

func TestScopeFunc(t *testing.T) {
	h := &counting{}
	srv := mustNew(t, stdhttp.WithScopeFunc(func(r *http.Request) string { return r.Header.Get("X-User") }))(h)
	a := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k", "X-User", "alice")
	b := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k", "X-User", "bob")
	if a.Body.String() == b.Body.String() || b.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("bob got alice's answer: %q / %q", a.Body, b.Body)
	}
	if again := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k", "X-User", "alice"); again.Body.String() != a.Body.String() {
		t.Errorf("alice's retry %q, want %q", again.Body, a.Body)
	}
}

func TestErrorHandler(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.KeyRequired = true
	var gotErr error
	srv := mustNew(t, stdhttp.WithPolicy(&p), stdhttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, prob *idempotency.Problem, err error) {
		gotErr = err
		http.Error(w, prob.Title, http.StatusTeapot)
	}))(&counting{})
	rec := behaviortest.Post(srv, "/pay")
	if rec.Code != http.StatusTeapot || !errors.Is(gotErr, idempotency.ErrKeyMissing) {
		t.Errorf("custom handler: %d, err %v", rec.Code, gotErr)
	}
}

// WithClock reaches the engine: lease renewal sleeps on the given clock.
func TestClock(t *testing.T) {
	slept := make(chan time.Duration, 1)
	sleep := func(ctx context.Context, d time.Duration) error {
		select {
		case slept <- d:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	release := make(chan struct{})
	srv := mustNew(t, stdhttp.WithClock(time.Now, sleep))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	done := make(chan struct{})
	go func() { behaviortest.Post(srv, "/pay", "Idempotency-Key", "k"); close(done) }()
	select {
	case d := <-slept:
		if d != idempotency.DefaultPolicy().Lease/3 {
			t.Errorf("renewal slept %v, want a third of the lease", d)
		}
	case <-time.After(5 * time.Second):
		t.Error("the injected clock was never used")
	}
	close(release)
	<-done
}

// A body larger than an outer http.MaxBytesReader allows is a 413, not a
// 500, and the handler does not run.
func TestMaxBytesReader(t *testing.T) {
	h := &counting{}
	inner := mustNew(t)(h)
	srv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 3)
		inner.ServeHTTP(w, r)
	})
	rec := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k")
	if rec.Code != http.StatusRequestEntityTooLarge || h.n.Load() != 0 {
		t.Errorf("got %d %s, handler ran %d times; want 413 and no run", rec.Code, rec.Body, h.n.Load())
	}
}

// http.TimeoutHandler outside the middleware (as docs/middleware.md says
// to place it): its 503 goes to the client while the handler goes on, and
// the retry never runs the handler again, whether the handler finished
// its answer or gave up at the cancellation.
func TestTimeoutHandlerOutside(t *testing.T) {
	for _, giveUp := range []bool{false, true} {
		var runs atomic.Int32
		done := make(chan struct{})
		slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(done)
			runs.Add(1)
			if giveUp {
				<-r.Context().Done()
				return
			}
			time.Sleep(100 * time.Millisecond) // past the timeout, effect done
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "charged")
		})
		srv := http.TimeoutHandler(mustNew(t)(slow), 20*time.Millisecond, "timed out")
		if first := behaviortest.Post(srv, "/pay", "Idempotency-Key", "k"); first.Code != http.StatusServiceUnavailable {
			t.Fatalf("giveUp=%v: first %d, want TimeoutHandler's 503", giveUp, first.Code)
		}
		<-done
		var again *httptest.ResponseRecorder
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			// The settle follows the handler's return: 409 until it lands.
			if again = behaviortest.Post(srv, "/pay", "Idempotency-Key", "k"); again.Code != http.StatusConflict || time.Now().After(deadline) {
				break
			}
		}
		want := http.StatusCreated // the answer it finished, replayed
		if giveUp {
			want = http.StatusFailedDependency // outcome-unknown
		}
		if again.Code != want || runs.Load() != 1 {
			t.Errorf("giveUp=%v: retry %d %q after %d runs, want %d and 1 run", giveUp, again.Code, again.Body, runs.Load(), want)
		}
	}
}
