package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/config"
)

// upstreamBody is the application's answer: about 200 bytes of JSON, the
// size of a typical "created" resource.
var upstreamBody = []byte(`{"id":"ord_5f2c9a7e1b3d4c8f","status":"created","item":"sku-123","quantity":2,` +
	`"amount":4200,"currency":"EUR","customer":"cus_42","created_at":"2025-01-01T00:00:00Z",` +
	`"links":{"self":"/orders/ord_5f2c9a7e1b3d4c8f"}}`)

// upstream is the trivial application behind every Envoy: it reads the
// request and answers 201. It counts calls, so a replay that reached it
// would show.
type upstream struct {
	srv   *http.Server
	addr  string
	calls atomic.Int64
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{addr: ln.Addr().String()}
	u.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/orders/ord_5f2c9a7e1b3d4c8f")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(upstreamBody)
	})}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

// startGopotency runs the server, wired as cmd/gopotency wires it, with the
// shipped envoy/gopotency.yaml on the given store, logging to logw.
func startGopotency(root, store string, logw io.Writer) (*app.Running, error) {
	cfg, err := config.Load([]string{"--config", filepath.Join(root, "envoy", "gopotency.yaml"), "--store", store,
		"--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		return nil, err
	}
	cfg.DrainDelay, cfg.ShutdownGrace = 0, 2*time.Second
	// Records of first-time keys would otherwise live 24h in a Redis given
	// with -redis-url; the retention is one argument of the same calls, so
	// it does not change what is measured.
	cfg.Default.Retention = 10 * time.Minute
	return app.Start(cfg, logw)
}

// redisServer is a throwaway redis-server on loopback: no persistence.
type redisServer struct {
	cmd     *exec.Cmd
	URL     string
	Version string
}

// startRedis runs redis-server from PATH in dir. ok is false when there is
// none.
func startRedis(dir string) (r *redisServer, ok bool, err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, false, nil
	}
	port, err := envoyrun.FreePort()
	if err != nil {
		return nil, true, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, true, fmt.Errorf("start redis-server: %w", err)
	}
	r = &redisServer{cmd: cmd, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	r.Version = "redis-server (version unknown)"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if v, ok := strings.CutPrefix(f, "v="); ok {
				r.Version = "Redis " + v
			}
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pingRedis(addr) == nil {
			return r, true, nil
		}
	}
	r.Stop()
	return nil, true, errors.New("redis-server did not answer PING within 10s")
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis answered %q", line)
	}
	return nil
}

func (r *redisServer) Stop() {
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// startEnvoy runs the shipped envoy.yaml pointed at gpAddr and appAddr, or
// the baseline without ext_proc when baseline is set.
func startEnvoy(ctx context.Context, bin, root, dir, gpAddr, appAddr string, baseline bool) (*envoyrun.Envoy, error) {
	raw, err := os.ReadFile(filepath.Join(root, "envoy", "envoy.yaml"))
	if err != nil {
		return nil, err
	}
	listen, err := envoyrun.FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := envoyrun.FreePort()
	if err != nil {
		return nil, err
	}
	addrs := envoyrun.Addrs{Listen: listen, Admin: admin, GoPotency: gpAddr, App: appAddr}
	cfg, err := envoyrun.Rewrite(raw, addrs)
	if err != nil {
		return nil, err
	}
	if baseline {
		if cfg, err = stripExtProc(cfg); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return envoyrun.Start(ctx, bin, dir, cfg, addrs)
}

// envoyVersion asks the binary, e.g. "1.40.0/Clean/RELEASE/BoringSSL".
func envoyVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	s := strings.TrimSpace(string(out))
	if _, v, ok := strings.Cut(s, "version: "); ok {
		if _, rest, ok := strings.Cut(v, "/"); ok {
			return rest // drop the commit hash
		}
		return v
	}
	return s
}
