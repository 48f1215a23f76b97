package app

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/idempotency"
)

// running is an App serving on loopback ports.
type running struct {
	app  *App
	stop context.CancelFunc
	done chan error
	logs *syncBuffer
	conn *grpc.ClientConn
}

// start loads yaml (plus loopback addresses), builds, binds and serves.
func start(t *testing.T, yaml string, opts ...Option) *running {
	t.Helper()
	if !strings.Contains(yaml, "drain_delay") {
		yaml = "drain_delay: 0s\n" + yaml // the default 5s would slow every test's shutdown
	}
	p := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(p, []byte(yaml), 0o600))
	cfg, err := config.Load([]string{"--config", p, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	r := &running{logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.app, err = New(ctx, cfg, r.logs, opts...)
	require.NoError(t, err)
	require.NoError(t, r.app.Listen())
	go func() { r.done <- r.app.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", r.logs.String())
		}
	})
	r.conn, err = grpc.NewClient(r.app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.conn.Close() })
	return r
}

// wait returns Serve's result, failing if it takes longer than limit.
func (r *running) wait(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(limit):
		t.Fatalf("Serve still running after %v", limit)
		return nil
	}
}

// get fetches an admin path and returns status and body.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.app.AdminAddr() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func (r *running) extproc() extprocv3.ExternalProcessorClient {
	return extprocv3.NewExternalProcessorClient(r.conn)
}

// failingGets wraps a store whose Get always fails, like an unreachable
// Redis behind a readiness probe.
type failingGets struct{ idempotency.Store }

func (failingGets) Get(context.Context, string) (*idempotency.Entry, error) {
	return nil, errors.Join(idempotency.ErrStoreUnavailable, errors.New("dial tcp: connection refused"))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
