package behaviortest

// RunCapture checks that a front end's response capture is faithful (this
// was the package mwtest): the middleware records exactly what the client
// got, streaming and http.ResponseController keep working, and panics,
// hijacks and departed clients settle the lease the way the behaviour
// contract says. It drives plain net/http handlers, which every framework
// can mount.

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// Mount puts h behind the front end under test, guarding every path with p.
// It must not recover panics (no recovery middleware).
type Mount func(t testing.TB, store idempotency.Store, p idempotency.Policy, h http.Handler) http.Handler

// timeout bounds every wait of the capture checks.
const timeout = 5 * time.Second

// RunCapture runs the capture checks against mount, each over a fresh
// memory store.
func RunCapture(t *testing.T, mount Mount) {
	t.Run("Flush", func(t *testing.T) { flush(t, mount) })
	t.Run("ResponseController", func(t *testing.T) { controller(t, mount) })
	t.Run("RepeatedFields", func(t *testing.T) { repeated(t, mount) })
	t.Run("DefaultDenylist", func(t *testing.T) { denylist(t, mount) })
	t.Run("LateHeader", func(t *testing.T) { lateHeader(t, mount) })
	t.Run("Informational", func(t *testing.T) { informational(t, mount) })
	t.Run("NoWrite", func(t *testing.T) { noWrite(t, mount) })
	t.Run("BodyRestored", func(t *testing.T) { bodyRestored(t, mount) })
	t.Run("TooLarge", func(t *testing.T) { tooLarge(t, mount) })
	t.Run("Panic", func(t *testing.T) { panics(t, mount) })
	t.Run("PanicAfterHead", func(t *testing.T) { panicAfterHead(t, mount) })
	t.Run("AbortHandler", func(t *testing.T) { abortHandler(t, mount) })
	t.Run("ClientGoneAnswered", func(t *testing.T) { clientGone(t, mount, true) })
	t.Run("ClientGoneUnanswered", func(t *testing.T) { clientGone(t, mount, false) })
	t.Run("Hijack", func(t *testing.T) { hijack(t, mount) })
}

// fixture is a front end over a fresh memory store, served on loopback.
type fixture struct {
	srv    *httptest.Server
	h      http.Handler
	calls  atomic.Int32
	served chan struct{} // one value each time the front end returns
}

func newFixture(t *testing.T, mount Mount, p idempotency.Policy, h http.HandlerFunc) *fixture {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	f := &fixture{served: make(chan struct{}, 64)}
	f.h = mount(t, mem, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		h(w, r)
	}))
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.served <- struct{}{} }()
		f.h.ServeHTTP(w, r)
	}))
	// Panics and hijacks are part of the checks; keep their logs quiet.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

// post sends a keyed POST and reads the whole answer.
func (f *fixture) post(t *testing.T, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/op", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// read returns the body of resp and closes it.
func read(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readAnswer reads resp in full as an answer, so the capture checks use
// the HTTP suite's assertions (wantProblem).
func readAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	return answer{status: resp.StatusCode, header: resp.Header, body: []byte(read(t, resp))}
}

func (f *fixture) wantCalls(t *testing.T, n int32) {
	t.Helper()
	if got := f.calls.Load(); got != n {
		t.Errorf("handler ran %d times, want %d", got, n)
	}
}

// wantSame checks replay repeats live: status, body and every field but
// framing ones, skip and Idempotent-Replayed (which must be "true").
func wantSame(t *testing.T, live, replay *http.Response, liveBody, replayBody string, skip ...string) {
	t.Helper()
	if replay.StatusCode != live.StatusCode || replayBody != liveBody {
		t.Errorf("replay %d %q, want %d %q", replay.StatusCode, replayBody, live.StatusCode, liveBody)
	}
	if got := replay.Header.Get(idempotency.ReplayedHeader); got != "true" {
		t.Errorf("replay %s = %q, want true", idempotency.ReplayedHeader, got)
	}
	if live.Header.Get(idempotency.ReplayedHeader) != "" {
		t.Errorf("live answer carries %s", idempotency.ReplayedHeader)
	}
	ignore := append([]string{"Date", "Content-Length", idempotency.ReplayedHeader}, skip...)
	for name, vs := range live.Header {
		if !slices.Contains(ignore, name) && !slices.Equal(vs, replay.Header[name]) {
			t.Errorf("%s: live %q, replay %q", name, vs, replay.Header[name])
		}
	}
	for name, vs := range replay.Header {
		if _, ok := live.Header[name]; !ok && !slices.Contains(ignore, name) {
			t.Errorf("replay adds %s %q", name, vs)
		}
	}
}

// waitFor receives from ch or fails after timeout.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

var errSentinel = errors.New("behaviortest: handler panic")

// Post serves one POST of {"a":1} through h with the given headers (name,
// value pairs) and returns the recorded response.
func Post(h http.Handler, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"a":1}`))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
