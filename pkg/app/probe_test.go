package app

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := Probe(context.Background(), []string{srv.URL + "/readyz"}, &out); err != nil || out.String() != "ready\n" {
		t.Fatalf("ready endpoint: err %v, output %q", err, out.String())
	}
	if err := Probe(context.Background(), []string{srv.URL + "/other"}, &out); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("503 must fail the probe, got %v", err)
	}
	if err := Probe(context.Background(), []string{"http://127.0.0.1:1/readyz"}, &out); err == nil {
		t.Fatal("nothing listening must fail the probe")
	}
	if err := Probe(context.Background(), []string{"a", "b"}, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("two arguments: %v", err)
	}
}
