package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVersionIsSetAtLinkTime builds the binary the way the Dockerfile and
// `make build` do and runs --version.
func TestVersionIsSetAtLinkTime(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "gopotency")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X github.com/gopotency/gopotency/pkg/version.version=v9.8.7-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "gopotency v9.8.7-test (go") {
		t.Fatalf("--version printed %q", out)
	}
}

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
	if err := probe(context.Background(), []string{srv.URL + "/readyz"}, &out); err != nil || out.String() != "ready\n" {
		t.Fatalf("ready endpoint: err %v, output %q", err, out.String())
	}
	if err := probe(context.Background(), []string{srv.URL + "/other"}, &out); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("503 must fail the probe, got %v", err)
	}
	if err := probe(context.Background(), []string{"http://127.0.0.1:1/readyz"}, &out); err == nil {
		t.Fatal("nothing listening must fail the probe")
	}
	if err := probe(context.Background(), []string{"a", "b"}, &out); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("two arguments: %v", err)
	}
}
