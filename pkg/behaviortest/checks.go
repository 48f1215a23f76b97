package behaviortest

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// framing headers describe one transfer, not the response: they may differ
// between an answer and its replay, and between front ends.
var framing = []string{"Date", "Server", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Via", "Alt-Svc"}

// neverReplayed are response headers of the upstream that the default
// denylist keeps out of replays.
var neverReplayed = []string{"Set-Cookie"}

func wantStatus(t testing.TB, a answer, status int) {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; answer: %v", a.status, status, a)
	}
}

// wantExecutions checks how many requests tagged tag reached the upstream.
func (s *suite) wantExecutions(t testing.TB, tag string, n int) {
	t.Helper()
	if got := s.up.Executions(tag); got != n {
		t.Errorf("upstream ran %d times for %s, want %d", got, tag, n)
	}
}

// wantRunsOnce sends c twice: the first answer is live with status, the
// second its replay, and the upstream ran c once.
func (s *suite) wantRunsOnce(t testing.TB, c call, status int) {
	t.Helper()
	first := s.send(t, c)
	wantLive(t, first, status)
	wantReplayOf(t, first, s.send(t, c))
	s.wantExecutions(t, c.tag, 1)
}

// wantLive checks a is the upstream's own answer, not a replay.
func wantLive(t testing.TB, a answer, status int) {
	t.Helper()
	wantStatus(t, a, status)
	if v := a.header.Values(idempotency.ReplayedHeader); len(v) != 0 {
		t.Errorf("live answer carries %s: %q", idempotency.ReplayedHeader, v)
	}
}

// wantProblem checks a is an RFC 9457 problem of the given status and stable
// type, sent as application/problem+json.
func wantProblem(t testing.TB, a answer, status int, slug string) {
	t.Helper()
	wantStatus(t, a, status)
	if mt, _, err := mime.ParseMediaType(a.header.Get("Content-Type")); err != nil || mt != "application/problem+json" {
		t.Errorf("Content-Type %q, want application/problem+json", a.header.Get("Content-Type"))
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatalf("problem body is not JSON: %v; answer: %v", err, a)
	}
	if want := idempotency.ProblemTypeBase + slug; p.Type != want {
		t.Errorf("problem type %q, want %q", p.Type, want)
	}
	if p.Status != status || p.Title == "" {
		t.Errorf("problem status %d title %q, want status %d and a title", p.Status, p.Title, status)
	}
	if a.header.Get(idempotency.ReplayedHeader) != "" {
		t.Errorf("problem carries %s", idempotency.ReplayedHeader)
	}
}

// wantRetryAfter checks a carries Retry-After in whole seconds, at least 1.
func wantRetryAfter(t testing.TB, a answer) {
	t.Helper()
	if n, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", a.header.Get("Retry-After"))
	}
}

// wantReplayOf checks replay repeats first: status, every header field
// (repeated ones in order) except framing and denylisted ones, which must
// be absent, the body byte for byte, and Idempotent-Replayed: true.
func wantReplayOf(t testing.TB, first, replay answer) {
	t.Helper()
	wantStatus(t, replay, first.status)
	if v := replay.header.Values(idempotency.ReplayedHeader); !slices.Equal(v, []string{"true"}) {
		t.Errorf("%s = %q, want exactly [true]", idempotency.ReplayedHeader, v)
	}
	if !bytes.Equal(first.body, replay.body) {
		t.Errorf("replayed body differs:\n first  %q\n replay %q", first.body, replay.body)
	}
	if cl := replay.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(replay.body)) {
		t.Errorf("replay Content-Length %s, body has %d bytes", cl, len(replay.body))
	}
	for _, name := range neverReplayed {
		if v := replay.header.Values(name); len(v) > 0 {
			t.Errorf("replay carries %s %q; it is on the default denylist", name, v)
		}
	}
	want, got := comparable(first.header), comparable(replay.header)
	for name, vs := range want {
		if !slices.Equal(vs, got[name]) {
			t.Errorf("replayed %s = %q, want %q", name, got[name], vs)
		}
	}
	for name, vs := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("replay adds %s = %q, absent from the original", name, vs)
		}
	}
}

// comparable drops framing, denylisted and proxy-added fields.
func comparable(h http.Header) map[string][]string {
	out := map[string][]string{}
	for name, vs := range h {
		if slices.Contains(framing, name) || slices.Contains(neverReplayed, name) ||
			name == idempotency.ReplayedHeader || strings.HasPrefix(name, "X-Envoy-") {
			continue
		}
		out[name] = vs
	}
	return out
}

// echoOf decodes the upstream's JSON echo.
func echoOf(t testing.TB, a answer) Echo {
	t.Helper()
	var e Echo
	if err := json.Unmarshal(a.body, &e); err != nil {
		t.Fatalf("answer is not the upstream's echo: %v; answer: %v", err, a)
	}
	return e
}
