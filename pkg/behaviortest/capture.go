package behaviortest

// RunCapture checks that a front end's response capture is faithful (this
// was the package mwtest): the middleware records exactly what the client
// got, streaming and http.ResponseController keep working, and panics,
// hijacks and departed clients settle the lease the way the behaviour
// contract says. It drives plain net/http handlers, which every framework
// can mount.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	for _, c := range []struct {
		name  string
		check func(t *testing.T, mount Mount)
	}{
		{"Flush", flush},
		{"ResponseController", controller},
		{"RepeatedFields", repeated},
		{"DefaultDenylist", denylist},
		{"LateHeader", lateHeader},
		{"Informational", informational},
		{"NoWrite", noWrite},
		{"BodyRestored", bodyRestored},
		{"TooLarge", tooLarge},
		{"Panic", panics},
		{"PanicAfterHead", panicAfterHead},
		{"AbortHandler", abortHandler},
		{"ClientGoneAnswered", func(t *testing.T, mount Mount) { clientGone(t, mount, true) }},
		{"ClientGoneUnanswered", func(t *testing.T, mount Mount) { clientGone(t, mount, false) }},
		{"Hijack", hijack},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, mount) })
	}
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

// wantReplayed posts key to f twice and checks the second answer repeats
// the first (wantSame, skipping skip); it returns both, bodies read.
func (f *fixture) wantReplayed(t *testing.T, key string, skip ...string) (live, replay *http.Response) {
	t.Helper()
	live = f.post(t, key, "{}")
	liveBody := read(t, live)
	replay = f.post(t, key, "{}")
	wantSame(t, live, replay, liveBody, read(t, replay), skip...)
	return live, replay
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

// streamed checks the first chunk reaches the client while the handler is
// still running, by making the handler wait for the client to read it.
func streamed(t *testing.T, mount Mount, flush func(w http.ResponseWriter) error) {
	got := make(chan struct{})
	var stuck atomic.Bool
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusAccepted)
		// Flushing first sends the head (Gin defers it until then).
		for i, chunk := range []string{"", "part1;"} {
			if i > 0 {
				_, _ = io.WriteString(w, chunk)
			}
			if err := flush(w); err != nil {
				t.Errorf("flush: %v", err)
			}
		}
		select {
		case <-got:
		case <-time.After(timeout):
			stuck.Store(true) // the flush never reached the client
		}
		_, _ = io.WriteString(w, "part2")
	})
	live := f.post(t, "k-stream", "{}")
	first := make([]byte, len("part1;"))
	if _, err := io.ReadFull(live.Body, first); err != nil {
		t.Fatal(err)
	}
	close(got)
	liveBody := string(first) + read(t, live)
	if stuck.Load() {
		t.Error("the flushed chunk did not reach the client while the handler ran")
	}
	replay := f.post(t, "k-stream", "{}")
	wantSame(t, live, replay, liveBody, read(t, replay))
	if liveBody != "part1;part2" {
		t.Errorf("live body %q", liveBody)
	}
	f.wantCalls(t, 1)
}

func flush(t *testing.T, mount Mount) {
	streamed(t, mount, func(w http.ResponseWriter) error {
		fl, ok := w.(http.Flusher)
		if !ok {
			return fmt.Errorf("%T is not an http.Flusher", w)
		}
		fl.Flush()
		return nil
	})
}

// controller checks http.ResponseController reaches the connection through
// the capturing writer: deadlines, full duplex and flushing.
func controller(t *testing.T, mount Mount) {
	streamed(t, mount, func(w http.ResponseWriter) error {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			return fmt.Errorf("SetWriteDeadline: %w", err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			return fmt.Errorf("SetReadDeadline: %w", err)
		}
		if err := rc.EnableFullDuplex(); err != nil {
			return fmt.Errorf("EnableFullDuplex: %w", err)
		}
		return rc.Flush()
	})
}

// repeated checks repeated fields stay apart and in order, live and
// replayed, and a field holding a comma stays one field.
func repeated(t *testing.T, mount Mount) {
	p := idempotency.DefaultPolicy()
	p.ReplayDenylist = []string{"Server"} // let Set-Cookie replay
	f := newFixture(t, mount, p, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "a=1; Path=/")
		h.Add("Set-Cookie", "b=2; Path=/; HttpOnly")
		h.Add("Link", "</a.css>; rel=preload")
		h.Add("Link", "</b.js>; rel=preload")
		h.Set("X-List", "one, two")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "ok")
	})
	_, replay := f.wantReplayed(t, "k-rep")
	want := []string{"a=1; Path=/", "b=2; Path=/; HttpOnly"}
	if got := replay.Header.Values("Set-Cookie"); !slices.Equal(got, want) {
		t.Errorf("replayed Set-Cookie %q, want %q", got, want)
	}
	if got := replay.Header.Values("X-List"); !slices.Equal(got, []string{"one, two"}) {
		t.Errorf("replayed X-List %q, want one field", got)
	}
	f.wantCalls(t, 1)
}

// denylist checks the default denylist: Set-Cookie and WWW-Authenticate reach
// the first client only.
func denylist(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("WWW-Authenticate", `Bearer realm="x"`)
		w.Header().Set("X-Kept", "yes")
		w.WriteHeader(http.StatusCreated)
	})
	live, replay := f.wantReplayed(t, "k-deny", "Set-Cookie", "Www-Authenticate")
	if got := live.Header.Values("Set-Cookie"); len(got) != 2 {
		t.Errorf("live Set-Cookie %q, want both", got)
	}
	if replay.Header.Get("Set-Cookie") != "" || replay.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("replay carries denylisted fields: %v", replay.Header)
	}
}

// lateHeader: fields set after WriteHeader are replayed exactly when the
// framework sent them live.
func lateHeader(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "1")
		w.WriteHeader(http.StatusAccepted)
		w.Header().Set("X-Late", "1")
		_, _ = io.WriteString(w, "ok")
	})
	f.wantReplayed(t, "k-late")
}

// informational: a 1xx answer before the final one is not mistaken for it.
func informational(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Final", "1")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "ok")
	})
	f.wantReplayed(t, "k-1xx")
}

// noWrite: a handler that sends nothing gets the framework's default answer,
// recorded and replayed like any other.
func noWrite(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Only", "header")
	})
	f.wantReplayed(t, "k-none")
	f.wantCalls(t, 1)
}

// bodyRestored: the handler reads the whole body the middleware read for
// the fingerprint.
func bodyRestored(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("handler read body: %v", err)
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
	body := strings.Repeat("0123456789", 10_000)
	live := f.post(t, "k-body", body)
	if got := read(t, live); got != body {
		t.Errorf("handler saw %d bytes, want %d", len(got), len(body))
	}
}

// tooLarge: an answer over the cap reaches the client whole; retries get
// 413 and never run.
func tooLarge(t *testing.T, mount Mount) {
	p := idempotency.DefaultPolicy()
	p.MaxResponseBody = 1024
	f := newFixture(t, mount, p, func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
		}
	})
	if got := read(t, f.post(t, "k-big", "{}")); len(got) != 3000 {
		t.Errorf("client got %d bytes, want 3000", len(got))
	}
	wantProblem(t, readAnswer(t, f.post(t, "k-big", "{}")), http.StatusRequestEntityTooLarge, "response-too-large")
	f.wantCalls(t, 1)
}

// serveDirect calls the front end without a server, returning what it
// panicked with.
func serveDirect(f *fixture, key string) (v any, rec *httptest.ResponseRecorder) {
	defer func() { v = recover() }()
	rec = httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/op", strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", key)
	f.h.ServeHTTP(rec, req)
	return nil, rec
}

// panics: a handler that panics before answering releases the key and the
// panic goes on, so a retry runs the handler again.
func panics(t *testing.T, mount Mount) {
	var f *fixture
	f = newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		if f.calls.Load() == 1 {
			panic(errSentinel)
		}
		w.WriteHeader(http.StatusCreated)
	})
	if v, _ := serveDirect(f, "k-panic"); v != errSentinel {
		t.Fatalf("front end panicked with %v, want the handler's panic", v)
	}
	if v, rec := serveDirect(f, "k-panic"); v != nil || rec.Code != http.StatusCreated || rec.Header().Get(idempotency.ReplayedHeader) != "" {
		t.Fatalf("retry after panic: panic %v, status %d, headers %v; want a fresh 201", v, rec.Code, rec.Header())
	}
	if _, rec := serveDirect(f, "k-panic"); rec.Code != http.StatusCreated || rec.Header().Get(idempotency.ReplayedHeader) != "true" {
		t.Errorf("third try: %d %v, want the replay", rec.Code, rec.Header())
	}
	f.wantCalls(t, 2)
}

// panicAfterHead: a handler that panics once its answer is under way has
// run (and may have had effects): its status is recorded as
// response-incomplete, never run again, and the panic goes on.
func panicAfterHead(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "partial")
		panic(errSentinel)
	})
	if v, _ := serveDirect(f, "k-panic-late"); v != errSentinel {
		t.Fatalf("front end panicked with %v, want the handler's panic", v)
	}
	v, rec := serveDirect(f, "k-panic-late")
	if v != nil || rec.Code != http.StatusFailedDependency || !strings.Contains(rec.Body.String(), `"original_status":201`) {
		t.Errorf("retry: panic %v, %d %s; want 424 response-incomplete with original_status 201", v, rec.Code, rec.Body)
	}
	f.wantCalls(t, 1)
}

// abortHandler: http.ErrAbortHandler means the response was under way, so
// the operation ran: the retry is told, never run.
func abortHandler(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	})
	if v, _ := serveDirect(f, "k-abort"); v != http.ErrAbortHandler {
		t.Fatalf("front end panicked with %v, want http.ErrAbortHandler", v)
	}
	_, rec := serveDirect(f, "k-abort")
	if rec.Code != http.StatusFailedDependency {
		t.Errorf("retry: %d %s, want 424", rec.Code, rec.Body)
	}
	f.wantCalls(t, 1)
}

// clientGone: the client leaves while the handler runs. A handler that
// still answers has a known outcome, recorded for the retry; one that gives
// up without answering leaves outcome-unknown (never run again).
func clientGone(t *testing.T, mount Mount, answers bool) {
	started := make(chan struct{}, 1)
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(timeout):
			t.Error("the request context did not end when the client left")
		}
		if answers {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "finished")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+"/op", strings.NewReader("{}"))
	req.Header.Set("Idempotency-Key", "k-gone")
	errc := make(chan error, 1)
	go func() {
		resp, err := f.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, started, "the handler to start")
	cancel()
	waitFor(t, errc, "the client to give up")
	waitFor(t, f.served, "the front end to return")
	retry := f.post(t, "k-gone", "{}")
	if answers {
		if body := read(t, retry); retry.StatusCode != http.StatusCreated || body != "finished" || retry.Header.Get(idempotency.ReplayedHeader) != "true" {
			t.Errorf("retry: %d %q %v, want the replay of the finished answer", retry.StatusCode, body, retry.Header)
		}
	} else {
		wantProblem(t, readAnswer(t, retry), http.StatusFailedDependency, "outcome-unknown")
	}
	f.wantCalls(t, 1)
}

// hijack: a handler that takes over the connection sends what the
// middleware cannot see, so the outcome is unknown, and recorded as such.
func hijack(t *testing.T, mount Mount) {
	f := newFixture(t, mount, idempotency.DefaultPolicy(), func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
		_ = brw.Flush()
	})
	live := f.post(t, "k-hijack", "{}")
	if body := read(t, live); live.StatusCode != http.StatusCreated || body != "hi" {
		t.Errorf("hijacked answer %d %q", live.StatusCode, body)
	}
	waitFor(t, f.served, "the front end to return")
	wantProblem(t, readAnswer(t, f.post(t, "k-hijack", "{}")), http.StatusFailedDependency, "outcome-unknown")
	f.wantCalls(t, 1)
}
