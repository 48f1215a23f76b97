package guard

import (
	"net/http"
	"slices"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestRecorderCap(t *testing.T) {
	r := NewRecorder(10, nil)
	r.Head(201, http.Header{})
	r.Body([]byte("12345"))
	r.Body([]byte("67890"))
	if got := r.Response(); got.Mark == idempotency.MarkTooLarge || string(got.Body) != "1234567890" {
		t.Fatalf("at the cap: %+v", got)
	}
	r.Body([]byte("x"))
	if got := r.Response(); got.Mark != idempotency.MarkTooLarge || got.Body != nil {
		t.Fatalf("past the cap: %+v", got)
	}
}

func TestRecorderHead(t *testing.T) {
	outer := http.Header{"X-Request-Id": {"1"}, "Vary": {"Origin"}}
	r := NewRecorder(100, outer)
	h := outer.Clone()
	h.Set("X-Request-Id", "changed")
	h.Add("Vary", "Accept")
	h.Add("Set-Cookie", "a=1")
	h.Add("Set-Cookie", "b=2")
	h.Set(http.TrailerPrefix+"X-Sum", "x")
	r.Head(202, h)
	r.Head(500, http.Header{"X-Other": {"1"}}) // the head went out once
	want := []idempotency.Header{
		{Name: "Set-Cookie", Value: "a=1"}, {Name: "Set-Cookie", Value: "b=2"},
		{Name: "Vary", Value: "Origin"}, {Name: "Vary", Value: "Accept"},
		{Name: "X-Request-Id", Value: "changed"},
	}
	got := r.Response()
	if got.Status != 202 || !slices.Equal(got.Headers, want) {
		t.Errorf("got %d %v, want 202 %v", got.Status, got.Headers, want)
	}
}

func TestRecorderUnchangedOuterSkipped(t *testing.T) {
	outer := http.Header{"X-Request-Id": {"1"}}
	r := NewRecorder(100, outer)
	h := outer.Clone()
	h.Set("X-Mine", "1")
	r.Head(200, h)
	if got := r.Response().Headers; !slices.Equal(got, []idempotency.Header{{Name: "X-Mine", Value: "1"}}) {
		t.Errorf("headers %v, want only the handler's", got)
	}
}

func TestRecorderAnnouncedTooLarge(t *testing.T) {
	r := NewRecorder(10, nil)
	r.Head(200, http.Header{"Content-Length": {"11"}})
	r.Body([]byte("12345"))
	if got := r.Response(); got.Mark != idempotency.MarkTooLarge || got.Body != nil {
		t.Fatalf("Content-Length over the cap: %+v", got)
	}
}
