package main

import (
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
