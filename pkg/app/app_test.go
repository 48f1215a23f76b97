package app

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// clearEnv keeps the developer's GOPOTENCY_* settings out of Main.
func clearEnv(t *testing.T) {
	for _, k := range []string{"GOPOTENCY_GRPC_ADDR", "GOPOTENCY_ADMIN_ADDR", "GOPOTENCY_STORE", "GOPOTENCY_CONFIG", "GOPOTENCY_LOG_LEVEL"} {
		t.Setenv(k, "")
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// noEnv is an empty environment for Main.
func noEnv(string) string { return "" }

// TestMainDispatches: every subcommand is reached through Main, with the
// streams and environment it is given rather than the process's.
func TestMainDispatches(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	require.NoError(t, Main(ctx, []string{"--version"}, noEnv, nil, &out, io.Discard))
	require.True(t, strings.HasPrefix(out.String(), "gopotency "), out.String())
	var usage bytes.Buffer
	require.NoError(t, Main(ctx, []string{"envoy-config", "--help"}, noEnv, nil, io.Discard, &usage))
	require.Contains(t, usage.String(), "usage: gopotency envoy-config")
	require.ErrorContains(t, Main(ctx, []string{"probe", "a", "b"}, noEnv, nil, io.Discard, io.Discard), "usage: gopotency probe")
	require.Error(t, Main(ctx, []string{"admin"}, noEnv, strings.NewReader(""), io.Discard, io.Discard), "admin without a verb")
	// The environment comes from getenv: a bad store there is reported.
	err := Main(ctx, nil, func(k string) string { return map[string]string{"GOPOTENCY_STORE": "nowhere"}[k] }, nil, io.Discard, io.Discard)
	require.ErrorContains(t, err, `store: "nowhere"`)
}

func TestMainRejectsBadArgsWithoutBinding(t *testing.T) {
	clearEnv(t)
	admin := freeAddr(t)
	var stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Main(ctx, []string{"--grpc-addr", "nohostport", "--admin-addr", admin, "--store", "nowhere", "--log-level", "loud"}, noEnv, nil, io.Discard, &stderr)
	require.Error(t, err)
	for _, want := range []string{`grpc_addr: "nohostport"`, `store: "nowhere"`, `log level: "loud"`} {
		require.Contains(t, err.Error(), want)
	}
	// The valid admin address was never bound: it is still free.
	ln, err := net.Listen("tcp", admin)
	require.NoError(t, err)
	require.NoError(t, ln.Close())
}

func TestMainReportsUnusableStoreAndBusyPort(t *testing.T) {
	clearEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := Main(ctx, []string{"--store", "ftp://files", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, noEnv, nil, io.Discard, &bytes.Buffer{})
	require.ErrorContains(t, err, `unsupported scheme "ftp"`)

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	err = Main(ctx, []string{"--grpc-addr", "127.0.0.1:0", "--admin-addr", busy.Addr().String()}, noEnv, nil, io.Discard, &bytes.Buffer{})
	require.ErrorContains(t, err, "admin listener")
}

func TestServesHealthReadinessAndMetrics(t *testing.T) {
	r := start(t, "")

	hc := healthpb.NewHealthClient(r.conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, svc := range []string{"", extprocv3.ExternalProcessor_ServiceDesc.ServiceName} {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), "service %q", svc)
	}

	code, body := r.get(t, "/healthz")
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)
	code, body = r.get(t, "/readyz")
	require.Equal(t, 200, code, body)

	// One keyed request through ext_proc feeds the engine's metrics.
	s, err := r.extproc().Process(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte("/m")}, {Key: "idempotency-key", RawValue: []byte("k-metrics")},
		}}, EndOfStream: true}}}))
	resp, err := s.Recv()
	require.NoError(t, err)
	require.NotNil(t, resp.GetRequestHeaders(), "acquired: CONTINUE")

	code, body = r.get(t, "/metrics")
	require.Equal(t, 200, code)
	for _, want := range []string{
		`gopotency_decisions_total{outcome="proceed"} 1`,
		`gopotency_store_duration_seconds_count{op="acquire",result="ok"} 1`,
		`gopotency_extproc_streams_active 1`,
		"go_goroutines", "process_", // runtime collectors are registered too
	} {
		require.Contains(t, body, want)
	}
	require.NoError(t, s.CloseSend())

	code, _ = r.get(t, "/nope")
	require.Equal(t, 404, code)
}

func TestReadyzFailsWhenTheStoreDoes(t *testing.T) {
	st := memstore.New(memstore.Options{})
	var closed atomic.Int32
	r := start(t, "", WithStore(failingGets{st}, func() error { closed.Add(1); return st.Close() }))
	code, body := r.get(t, "/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "store unreachable")
	require.NotContains(t, body, "connection refused", "internals stay in the log")
	require.Contains(t, r.logs.String(), "connection refused")
	code, _ = r.get(t, "/healthz")
	require.Equal(t, 200, code, "liveness does not depend on the store")

	r.stop()
	require.NoError(t, r.wait(t, 5*time.Second))
	require.EqualValues(t, 1, closed.Load(), "the store is closed once at shutdown")
}

// TestShutdownDrainsThenStops: health turns NOT_SERVING and /readyz says
// draining for DrainDelay, then Serve returns.
func TestShutdownDrainsThenStops(t *testing.T) {
	r := start(t, "drain_delay: 1s\nshutdown_grace: 2s\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wctx, wcancel := context.WithCancel(ctx)
	watch, err := healthpb.NewHealthClient(r.conn).Watch(wctx, &healthpb.HealthCheckRequest{Service: extprocv3.ExternalProcessor_ServiceDesc.ServiceName})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())

	r.stop()
	next, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.GetStatus(), "Envoy's health checks see the drain first")
	wcancel() // a watch is a stream too; let graceful stop finish

	// Still within DrainDelay: the admin server answers, not ready.
	code, body := r.get(t, "/readyz")
	require.Equal(t, 503, code)
	require.Contains(t, body, "draining")

	require.NoError(t, r.wait(t, 5*time.Second))
	_, err = net.DialTimeout("tcp", r.app.GRPCAddr(), time.Second)
	require.Error(t, err, "the gRPC port is closed")
	require.True(t, strings.Contains(r.logs.String(), `"msg":"stopped"`), r.logs.String())
}

// TestShutdownCutsStreamsAfterGrace: a stream still open when the grace
// period ends is cut, and its key is recorded as outcome-unknown.
func TestShutdownCutsStreamsAfterGrace(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	const grace = 300 * time.Millisecond
	r := start(t, "shutdown_grace: 300ms\n", WithStore(st, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.extproc().Process(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte("/slow")}, {Key: "idempotency-key", RawValue: []byte("k-cut")},
		}}, EndOfStream: true}}}))
	_, err = s.Recv()
	require.NoError(t, err)
	// The upstream is now running; the server shuts down.

	began := time.Now()
	r.stop()
	require.NoError(t, r.wait(t, 5*time.Second))
	require.GreaterOrEqual(t, time.Since(began), grace, "graceful stop waits for open streams up to the grace period")
	_, err = s.Recv()
	require.Error(t, err, "the open stream was cut")

	ent, err := st.Get(context.Background(), idempotency.StorageKey("", "k-cut"))
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, ent.State, "cut mid-request: settled before the store closed")
	require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark, "the upstream was running: outcome unknown, never run again")
}

// TestLargeBufferedBodyFitsTheMessageLimit: the gRPC receive limit follows
// the largest max_request_body, above grpc-go's 4 MiB default.
func TestLargeBufferedBodyFitsTheMessageLimit(t *testing.T) {
	r := start(t, "policies:\n  uploads:\n    max_request_body: 6291456\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := r.extproc().Process(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{
		Body: bytes.Repeat([]byte("x"), 5<<20)}}}))
	resp, err := s.Recv()
	require.NoError(t, err, "a 5 MiB body must not be refused with ResourceExhausted")
	require.NotNil(t, resp.GetResponseBody())
}
