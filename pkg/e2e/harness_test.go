package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/internal/proc"
	"github.com/gopotency/gopotency/pkg/app"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

// stack is Envoy + gopotency + an upstream, all on loopback.
type stack struct {
	envoy    *envoyrun.Envoy
	app      *app.Running
	URL      string
	upstream *http.Server
	logs     *logBuffer
	// extProcStats is the ext_proc filter's stat prefix.
	extProcStats string
}

type stackOptions struct {
	store    string              // store URL, memory:// by default
	config   string              // gopotency YAML, envoy/gopotency.yaml by default
	upstream http.Handler        // the application
	tweak    func([]byte) []byte // edits the Envoy config after the address rewrite
	// envoy is the Envoy config before the address rewrite
	// (envoy/envoy.yaml by default).
	envoy []byte
	// gopotency, when set, is the address of a gopotency run elsewhere
	// (a process the test kills); no in-process server is started.
	gopotency string
	// configure edits the loaded gopotency configuration.
	configure func(*config.Config)
	appOpts   []app.Option
	// bootstrap, when set, writes the whole Envoy config for the
	// addresses (a control plane's translation has no anchors for
	// envoyrun.Rewrite); envoy and tweak are then unused.
	bootstrap func(envoyrun.Addrs) []byte
	// extProcStats is the ext_proc filter's stat prefix
	// ("http.ingress.ext_proc." by default, envoy.yaml's).
	extProcStats string
}

// startStack runs the shipped envoy/envoy.yaml and gopotency config.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	testenv.SkipShort(t, "Envoy and the gopotency stack")
	bin, err := envoyrun.Find()
	if err != nil {
		testenv.Unavailable(t, "%v", err)
	}
	root, err := envoyrun.ModuleRoot()
	require.NoError(t, err)
	if o.store == "" {
		o.store = "memory://"
	}
	if o.config == "" {
		o.config = filepath.Join(root, "envoy", "gopotency.yaml")
	}
	s := &stack{extProcStats: o.extProcStats}
	if s.extProcStats == "" {
		s.extProcStats = "http.ingress.ext_proc."
	}

	// Upstream on a free port.
	upLn := listen(t)
	s.upstream = &http.Server{Handler: o.upstream, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.upstream.Serve(upLn) }()
	t.Cleanup(func() { _ = s.upstream.Close() })

	// gopotency, wired exactly as cmd/gopotency wires it.
	gp := o.gopotency
	if gp == "" {
		s.startApp(t, o)
		gp = s.app.GRPCAddr()
	}

	// A port picked free can be taken by another process before Envoy
	// binds it (parallel test binaries): pick again, a few times.
	for try := 0; ; try++ {
		ports := freePorts(t, 2)
		addrs := envoyrun.Addrs{Listen: ports[0], Admin: ports[1], GoPotency: gp, App: upLn.Addr().String()}
		var cfg []byte
		if o.bootstrap != nil {
			cfg = o.bootstrap(addrs)
		} else {
			raw := o.envoy
			if raw == nil {
				raw, err = os.ReadFile(filepath.Join(root, "envoy", "envoy.yaml"))
				require.NoError(t, err)
			}
			cfg, err = envoyrun.Rewrite(raw, addrs)
			require.NoError(t, err)
			if o.tweak != nil {
				cfg = o.tweak(cfg)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		s.envoy, err = envoyrun.Start(ctx, bin, t.TempDir(), cfg, envoyrun.Addrs{Listen: ports[0], Admin: ports[1]})
		if err == nil || try == 2 || !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		s.envoy.Stop()
		if t.Failed() {
			t.Logf("envoy log tail:\n%s", s.envoy.Log())
		}
	})
	s.URL = s.envoy.URL
	return s
}

func (s *stack) startApp(t *testing.T, o stackOptions) {
	t.Helper()
	args := []string{"--config", o.config, "--store", o.store, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	cfg, err := config.Load(args, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	cfg.DrainDelay, cfg.ShutdownGrace = 0, 2*time.Second
	if o.configure != nil {
		o.configure(cfg)
	}
	logw := &logBuffer{}
	a, err := app.Start(cfg, logw, o.appOpts...)
	require.NoError(t, err)
	s.app, s.logs = a, logw
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("gopotency log tail:\n%s", logw.tail(6000))
		}
	})
}

// stop ends the gopotency server (idempotent).
func (s *stack) stop() { _ = s.app.Stop() }

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func freePorts(t *testing.T, n int) []int {
	ports, err := proc.FreePorts(n)
	require.NoError(t, err)
	return ports
}

// deadPort returns a loopback port that refuses connections for the whole
// test. A port merely picked free can be taken by a parallel test binary
// before it is dialled (CI once got that binary's 404 instead of a refused
// connection). Here the port is the local end of a held connection: bound,
// so nobody else can take it, and never listening, so a dial is refused.
// Both ends stay open: a reset connection would give its port back.
func deadPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	peer, err := l.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c.LocalAddr().(*net.TCPAddr).Port
}

// result is a response read whole.
type result struct {
	Status int
	Header http.Header
	Body   []byte
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}

func do(t *testing.T, method, url, key string, body string, hdr ...string) result {
	t.Helper()
	return doWith(t, client, method, url, key, body, hdr...)
}

// doWith is do through client c (a TLS client, or one bound to an address).
func doWith(t *testing.T, c *http.Client, method, url, key string, body string, hdr ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return result{resp.StatusCode, resp.Header, b}
}

func itoa(i int) string { return strconv.Itoa(i) }
