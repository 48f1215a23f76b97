package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gopotency/gopotency/internal/envoyrun"
	"github.com/gopotency/gopotency/pkg/config"
	"github.com/gopotency/gopotency/pkg/envoyconfig"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
)

// Unary gRPC calls deduplicated in the proxy: a real grpc-go client calls
// a real grpc-go server through Envoy 1.40 and gopotency, on a stream in
// FULL_DUPLEX_STREAMED mode (what StreamedImmediateResponse needs).

// startGRPCStack runs gopotency (the shipped configuration, memory store)
// and Envoy in front of the echo upstream, on the Envoy config `gopotency
// envoy-config` generates for the shipped envoy section with its app
// cluster marked grpc.
func startGRPCStack(t *testing.T, configure ...func(*config.Config)) (*echoUpstream, string, *stack) {
	t.Helper()
	up, app := startEchoUpstream(t)
	s := &stack{}
	s.startApp(t, stackOptions{config: filepath.Join(root(t), "envoy", "gopotency.yaml"), store: "memory://", configure: func(c *config.Config) {
		for _, f := range configure {
			f(c)
		}
	}})
	generated := grpcEnvoy(t)
	e := startEnvoyWith(t, func(a envoyrun.Addrs) []byte {
		a.GoPotency, a.App = s.app.GRPCAddr(), app
		out, err := envoyrun.Rewrite(generated, a)
		require.NoError(t, err)
		return out
	})
	return up, target(e), s
}

// grpcEnvoy is what the generator makes of the shipped configuration
// with its upstream serving gRPC.
func grpcEnvoy(t *testing.T) []byte {
	t.Helper()
	cfg, err := config.Load([]string{"--config", filepath.Join(root(t), "envoy", "gopotency.yaml")}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	e, err := cfg.RequireEnvoy()
	require.NoError(t, err)
	require.Len(t, e.Clusters, 1)
	e.Clusters[0].GRPC = true
	out, err := envoyconfig.Generate(cfg, "the gRPC tests")
	require.NoError(t, err)
	return out
}

func grpcKey(t *testing.T) string { return t.Name() + "-" + itoa(int(time.Now().UnixNano())) }

func TestGRPCRunsOnceAndReplaysWithTrailers(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	key := grpcKey(t)
	first := callEcho(t, addr, "order-1", grpcmw.KeyMetadata, key)
	require.NoError(t, first.err)
	assert.Equal(t, "echo:order-1", first.reply)
	for range 3 {
		r := callEcho(t, addr, "order-1", grpcmw.KeyMetadata, key)
		require.NoError(t, r.err)
		assert.Equal(t, first.reply, r.reply)
		assert.Equal(t, []string{"true"}, r.header.Get(grpcmw.ReplayedKey))
		assert.Equal(t, first.header.Get("x-header"), r.header.Get("x-header"))
		assert.Equal(t, []string{"\x00\x01\xff"}, r.header.Get("x-bin-bin"))
		assert.Equal(t, first.trailr, r.trailr, "trailers as the first call got them")
	}
	assert.Equal(t, 1, up.count("order-1"))

	// On the wire: the same message bytes, the same trailers, the same
	// headers but for the marker and the per-response Date.
	key2 := grpcKey(t)
	msg := grpcFrame(wrapperspb.String("order-2"))
	a := rawCall(t, addr, msg, grpcmw.KeyMetadata, key2)
	b := rawCall(t, addr, msg, grpcmw.KeyMetadata, key2)
	t.Logf("first:  %d %v %x %v", a.status, a.header, a.body, a.trailer)
	t.Logf("replay: %d %v %x %v", b.status, b.header, b.body, b.trailer)
	assert.Equal(t, a.status, b.status)
	assert.Equal(t, a.body, b.body)
	assert.Equal(t, a.trailer, b.trailer)
	assert.Equal(t, "true", b.header.Get(grpcmw.ReplayedKey))
	for _, h := range []http.Header{a.header, b.header} {
		h.Del("date")
		h.Del(grpcmw.ReplayedKey)
	}
	a.header.Del("x-envoy-upstream-service-time") // per response, not replayed
	assert.Equal(t, a.header, b.header)
	assert.Equal(t, 1, up.count("order-2"))
}

func TestGRPCConcurrentDuplicatesRunOnce(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	key := grpcKey(t)
	const n = 20
	results := make([]echoResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = callEcho(t, addr, "slow:pay", grpcmw.KeyMetadata, key) })
	}
	wg.Wait()
	ok, inProgress := 0, 0
	for _, r := range results {
		if r.err == nil {
			ok++
			assert.Equal(t, "echo:slow:pay", r.reply)
			continue
		}
		assert.Equal(t, codes.Aborted, status.Code(r.err), "%v", r.err)
		assert.Equal(t, idempotency.ProblemFor(idempotency.ErrInFlight).Type, grpcmw.ProblemType(r.err))
		assert.Positive(t, grpcmw.RetryDelay(r.err))
		inProgress++
	}
	t.Logf("%d answers, %d in progress", ok, inProgress)
	assert.GreaterOrEqual(t, ok, 1)
	assert.Equal(t, 1, up.count("slow:pay"), "one execution for 20 concurrent duplicates")
	r := callEcho(t, addr, "slow:pay", grpcmw.KeyMetadata, key)
	require.NoError(t, r.err)
	assert.Equal(t, []string{"true"}, r.header.Get(grpcmw.ReplayedKey))
	assert.Equal(t, 1, up.count("slow:pay"))
}

func TestGRPCKeyReuseIsRefused(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	key := grpcKey(t)
	require.NoError(t, callEcho(t, addr, "first", grpcmw.KeyMetadata, key).err)
	r := callEcho(t, addr, "second", grpcmw.KeyMetadata, key)
	require.Error(t, r.err)
	assert.Equal(t, codes.AlreadyExists, status.Code(r.err), "%v", r.err)
	assert.Equal(t, idempotency.ProblemFor(idempotency.ErrMismatch).Type, grpcmw.ProblemType(r.err))
	assert.Equal(t, 0, up.count("second"), "the fingerprint covers the message")
	assert.Equal(t, 1, up.count("first"))
}

func TestGRPCErrorStatuses(t *testing.T) {
	up, addr, _ := startGRPCStack(t)

	// Internal maps to 500: not stored, the key released, a retry runs.
	key := grpcKey(t)
	for i := 1; i <= 2; i++ {
		r := callEcho(t, addr, "fail:INTERNAL", grpcmw.KeyMetadata, key)
		assert.Equal(t, codes.Internal, status.Code(r.err))
		assert.Equal(t, "upstream says INTERNAL", status.Convert(r.err).Message())
		assert.Empty(t, r.header.Get(grpcmw.ReplayedKey))
		assert.Equal(t, i, up.count("fail:INTERNAL"), "released: the retry ran")
	}

	// NotFound maps to 404: stored and replayed trailers-only, as it came.
	key = grpcKey(t)
	first := callEcho(t, addr, "fail:NOT_FOUND", grpcmw.KeyMetadata, key)
	again := callEcho(t, addr, "fail:NOT_FOUND", grpcmw.KeyMetadata, key)
	assert.Equal(t, codes.NotFound, status.Code(first.err))
	assert.Equal(t, status.Convert(first.err).Proto(), status.Convert(again.err).Proto())
	assert.Equal(t, first.trailr.Get("x-trailer"), again.trailr.Get("x-trailer"))
	assert.Equal(t, []string{"true"}, again.trailr.Get(grpcmw.ReplayedKey))
	assert.Equal(t, 1, up.count("fail:NOT_FOUND"))
}

// TestGRPCUpstreamGaveUpIsOutcomeUnknown: an upstream that answers
// DEADLINE_EXCEEDED or CANCELLED gave up on its own and may have had its
// effect, so its key is neither stored nor released: retries are told
// the outcome is unknown and never run, as grpcmw does in-process.
func TestGRPCUpstreamGaveUpIsOutcomeUnknown(t *testing.T) {
	up, addr, s := startGRPCStack(t)
	for i, c := range []struct {
		code codes.Code
		name string
	}{{codes.DeadlineExceeded, "DEADLINE_EXCEEDED"}, {codes.Canceled, "CANCELLED"}} {
		code, input := c.code, "fail:"+c.name
		key := grpcKey(t) + "-" + c.name
		first := callEcho(t, addr, input, grpcmw.KeyMetadata, key)
		require.Equal(t, code, status.Code(first.err), "%v", first.err)
		for range 2 {
			again := callEcho(t, addr, input, grpcmw.KeyMetadata, key)
			assert.Equal(t, codes.FailedPrecondition, status.Code(again.err), "%v", again.err)
			assert.Equal(t, idempotency.ProblemTypeBase+"outcome-unknown", grpcmw.ProblemType(again.err))
		}
		assert.Equal(t, 1, up.count(input), "%s: the retries never ran", code)
		assert.Equal(t, float64(i+1), metric(t, s, `gopotency_leases_settled_total{how="unknown"}`))
	}

	// After messages, in the trailers: the same, whether the response body
	// goes to gopotency STREAMED (as generated) or FULL_DUPLEX_STREAMED (as
	// Envoy Gateway sets it).
	s2 := &stack{}
	s2.startApp(t, stackOptions{config: filepath.Join(root(t), "envoy", "gopotency.yaml"), store: "memory://"})
	up2, app := startEchoUpstream(t)
	duplex := target(startGRPCEnvoy(t, s2.app.GRPCAddr(), app,
		`{request_header_mode: SEND, request_body_mode: FULL_DUPLEX_STREAMED, request_trailer_mode: SEND, response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}`))
	for _, at := range []string{addr, duplex} {
		key := grpcKey(t)
		got, err := repeat(t, at, key, "fail:DEADLINE_EXCEEDED")
		assert.Len(t, got, 3, "the messages came before the status")
		require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		for range 2 {
			got, err = repeat(t, at, key, "fail:DEADLINE_EXCEEDED")
			assert.Empty(t, got)
			assert.Equal(t, idempotency.ProblemTypeBase+"outcome-unknown", grpcmw.ProblemType(err), "%v", err)
		}
	}
	assert.Equal(t, 1, up.count("repeat:fail:DEADLINE_EXCEEDED"), "STREAMED: run once")
	assert.Equal(t, 1, up2.count("repeat:fail:DEADLINE_EXCEEDED"), "FULL_DUPLEX_STREAMED: run once")
}

// repeat calls the server-streaming Repeat with key and returns the
// messages and the call's end (nil for OK).
func repeat(t *testing.T, addr, key, input string) ([]string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), grpcmw.KeyMetadata, key), 10*time.Second)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/gopotency.verify.v1.Echo/Repeat")
	require.NoError(t, err)
	require.NoError(t, cs.SendMsg(wrapperspb.String(input)))
	require.NoError(t, cs.CloseSend())
	var got []string
	for {
		out := new(wrapperspb.StringValue)
		if err := cs.RecvMsg(out); err == io.EOF {
			return got, nil
		} else if err != nil {
			return got, err
		}
		got = append(got, out.GetValue())
	}
}

func TestGRPCUnkeyedCallsPassThrough(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	for range 2 {
		r := callEcho(t, addr, "no-key")
		require.NoError(t, r.err)
		assert.Equal(t, "echo:no-key", r.reply)
		assert.Equal(t, []string{"t1"}, r.trailr.Get("x-trailer"))
	}
	assert.Equal(t, 2, up.count("no-key"))
}

// TestGRPCGoPotencyDownIsUnavailable: failure_mode_allow false: Envoy's
// own error reply, which it renders as a gRPC status, and nothing runs.
func TestGRPCGoPotencyDownIsUnavailable(t *testing.T) {
	up, app := startEchoUpstream(t)
	dead := deadPort(t)
	generated := grpcEnvoy(t)
	e := startEnvoyWith(t, func(a envoyrun.Addrs) []byte {
		a.GoPotency, a.App = "127.0.0.1:"+itoa(dead), app
		out, err := envoyrun.Rewrite(generated, a)
		require.NoError(t, err)
		return out
	})
	r := callEcho(t, target(e), "while-down", grpcmw.KeyMetadata, grpcKey(t))
	assert.Equal(t, codes.Unavailable, status.Code(r.err), "%v", r.err)
	assert.Equal(t, 0, up.count("while-down"))
}

// TestGRPCLargeMessages: a message Envoy passes in several chunks runs
// once and replays; one over max_request_body is refused, nothing run.
func TestGRPCLargeMessages(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	big := strings.Repeat("x", 300<<10)
	key := grpcKey(t)
	for range 2 {
		r := callEcho(t, addr, big, grpcmw.KeyMetadata, key)
		require.NoError(t, r.err)
		assert.Equal(t, "echo:"+big, r.reply)
	}
	assert.Equal(t, 1, up.count(big))

	huge := strings.Repeat("y", 2<<20)
	r := callEcho(t, addr, huge, grpcmw.KeyMetadata, grpcKey(t))
	assert.Equal(t, codes.ResourceExhausted, status.Code(r.err), "%v", r.err)
	assert.Equal(t, idempotency.ProblemFor(idempotency.ErrRequestTooLarge).Type, grpcmw.ProblemType(r.err))
	assert.Equal(t, 0, up.count(huge))
}

// TestGRPCStreamsPassThrough: a keyed call that sends a second message is
// a stream: it goes upstream as it came, every time, unrecorded.
func TestGRPCStreamsPassThrough(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	key := grpcKey(t)
	for range 2 {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), grpcmw.KeyMetadata, key), 10*time.Second)
		cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, "/gopotency.verify.v1.Echo/Collect")
		require.NoError(t, err)
		for _, m := range []string{"a", "b", "c"} {
			require.NoError(t, cs.SendMsg(wrapperspb.String(m)))
		}
		require.NoError(t, cs.CloseSend())
		out := new(wrapperspb.StringValue)
		require.NoError(t, cs.RecvMsg(out))
		assert.Equal(t, "a,b,c", out.GetValue())
		cancel()
	}
	assert.Equal(t, 2, up.count("collect:a,b,c"))
}

// TestGRPCKeyedBidiWaitingForAReply: a keyed stream whose client sends one
// message and waits for a reply before sending more cannot be told from a
// unary call until its request ends. Envoy runs no message timeout while
// the headers answer waits for the message in this mode, so the server
// bounds the wait itself (ext_proc.max_message_timeout): the call is
// refused with RESOURCE_EXHAUSTED, nothing runs.
func TestGRPCKeyedBidiWaitingForAReply(t *testing.T) {
	up, addr, _ := startGRPCStack(t, func(c *config.Config) { c.MaxMessageTimeout = time.Second })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), grpcmw.KeyMetadata, grpcKey(t)), 10*time.Second)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/gopotency.verify.v1.Echo/Chat")
	require.NoError(t, err)
	require.NoError(t, cs.SendMsg(wrapperspb.String("hi")))
	start := time.Now()
	err = cs.RecvMsg(new(wrapperspb.StringValue))
	assert.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "must end its request")
	assert.Less(t, time.Since(start), 5*time.Second, "refused by the server's bound, not the client's deadline")
	assert.Equal(t, 0, up.count("chat:hi"))
}

// TestGRPCDuplicatesWaitForTheFirst: with wait_in_flight, duplicates of a
// running call wait (Envoy's message timeout raised per request) and get
// its answer.
func TestGRPCDuplicatesWaitForTheFirst(t *testing.T) {
	up, addr, _ := startGRPCStack(t, func(c *config.Config) { c.Default.WaitInFlight = 3 * time.Second })
	key := grpcKey(t)
	results := make([]echoResult, 10)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = callEcho(t, addr, "slow:wait", grpcmw.KeyMetadata, key) })
	}
	wg.Wait()
	for _, r := range results {
		require.NoError(t, r.err)
		assert.Equal(t, "echo:slow:wait", r.reply)
		assert.Equal(t, []string{"t1"}, r.trailr.Get("x-trailer"))
	}
	assert.Equal(t, 1, up.count("slow:wait"))
}

// TestIstioSidecarGRPC: the istio-sidecar overlay's configuration
// generated with --grpc for a gRPC workload's port, through Istio's
// generator into a real Envoy: keyed unary calls run once and replay,
// unkeyed ones pass, the HTTP filter skips gRPC calls.
func TestIstioSidecarGRPC(t *testing.T) {
	cfgPath := filepath.Join(root(t), "deploy", "overlays", "istio-sidecar", "gopotency.yaml")
	cfg, err := config.Load([]string{"--config", cfgPath}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	ef, err := envoyconfig.GenerateTarget(cfg, envoyconfig.TargetIstioSidecar,
		envoyconfig.Kube{Name: "gopotency-grpc", Namespace: "shop", Selector: map[string]string{"app": "ledger"}, Port: 50051, GRPC: true}, "the gRPC sidecar test")
	require.NoError(t, err)
	efPath := filepath.Join(t.TempDir(), "envoyfilter.yaml")
	require.NoError(t, os.WriteFile(efPath, ef, 0o600))
	x := runIstioXDSFor(t, "sidecar", []string{"-labels", "app=ledger", "-ip", "10.10.0.11"},
		append([]string{efPath, "pkg/e2e/testdata/istio/grpc.yaml"}, istioShared...)...)
	r := reduce(t, x, sidecarChainOn("50051"))
	_, order := r.extProc(t)
	require.Equal(t, []string{extProcID, envoyconfig.GRPCFilterName, "envoy.filters.http.router"}, order[len(order)-3:], "both filters just before the router")

	up, app := startEchoUpstream(t)
	s := &stack{}
	s.startApp(t, stackOptions{config: cfgPath, store: "memory://"})
	e := startEnvoyWith(t, func(a envoyrun.Addrs) []byte {
		a.GoPotency, a.App = s.app.GRPCAddr(), app
		return r.bootstrap(t, a, extProcClusterName)
	})
	t.Logf("dropped Istio-proxy-only filters for stock Envoy: %v", r.dropped)
	addr := target(e)
	key := grpcKey(t)
	first := callEcho(t, addr, "istio", grpcmw.KeyMetadata, key)
	require.NoError(t, first.err)
	again := callEcho(t, addr, "istio", grpcmw.KeyMetadata, key)
	require.NoError(t, again.err)
	assert.Equal(t, "echo:istio", again.reply)
	assert.Equal(t, []string{"true"}, again.header.Get(grpcmw.ReplayedKey))
	assert.Equal(t, first.trailr, again.trailr)
	assert.Equal(t, 1, up.count("istio"))
	other := callEcho(t, addr, "other", grpcmw.KeyMetadata, key)
	assert.Equal(t, codes.AlreadyExists, status.Code(other.err), "%v", other.err)
	for range 2 {
		require.NoError(t, callEcho(t, addr, "istio-unkeyed").err)
	}
	assert.Equal(t, 2, up.count("istio-unkeyed"))
	n, err := e.Stat("http." + fmt.Sprint(r.hcm["stat_prefix"]) + ".ext_proc.streams_started")
	require.NoError(t, err)
	assert.EqualValues(t, 3, n, "one ext_proc stream per keyed call: the HTTP filter skipped them, the gRPC filter the unkeyed ones")
}

// TestGRPCResponseFullDuplex: with the response body FULL_DUPLEX_STREAMED
// too (Envoy Gateway sends response trailers only then), the answer's
// chunks go back as they come and the call is recorded as with STREAMED.
func TestGRPCResponseFullDuplex(t *testing.T) {
	up, app := startEchoUpstream(t)
	s := &stack{}
	s.startApp(t, stackOptions{config: filepath.Join(root(t), "envoy", "gopotency.yaml"), store: "memory://"})
	addr := target(startGRPCEnvoy(t, s.app.GRPCAddr(), app,
		`{request_header_mode: SEND, request_body_mode: FULL_DUPLEX_STREAMED, request_trailer_mode: SEND, response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}`))
	key := grpcKey(t)
	first := callEcho(t, addr, "duplex", grpcmw.KeyMetadata, key)
	require.NoError(t, first.err)
	assert.Equal(t, "echo:duplex", first.reply)
	again := callEcho(t, addr, "duplex", grpcmw.KeyMetadata, key)
	require.NoError(t, again.err)
	assert.Equal(t, "echo:duplex", again.reply)
	assert.Equal(t, []string{"true"}, again.header.Get(grpcmw.ReplayedKey))
	assert.Equal(t, first.trailr, again.trailr)
	assert.Equal(t, 1, up.count("duplex"))

	key = grpcKey(t)
	for i := 1; i <= 2; i++ {
		r := callEcho(t, addr, "fail:UNAVAILABLE", grpcmw.KeyMetadata, key)
		assert.Equal(t, codes.Unavailable, status.Code(r.err))
		assert.Equal(t, i, up.count("fail:UNAVAILABLE"), "released")
	}
	for range 2 {
		r := callEcho(t, addr, "duplex-unkeyed")
		require.NoError(t, r.err)
		assert.Equal(t, "echo:duplex-unkeyed", r.reply)
	}
	assert.Equal(t, 2, up.count("duplex-unkeyed"))
}

// TestEnvoyGatewayGRPC: the envoy-gateway overlay's configuration
// generated with a GRPCRoute (--grpc-route), through Envoy Gateway's own
// translator into a real Envoy: the GRPCRoute's policy (request and
// response bodies FullDuplexStreamed) runs keyed unary calls once and
// replays them with their trailers.
func TestEnvoyGatewayGRPC(t *testing.T) {
	egctlBin(t)
	cfgPath := filepath.Join(root(t), "deploy", "overlays", "envoy-gateway", "gopotency.yaml")
	cfg, err := config.Load([]string{"--config", cfgPath}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	policies, err := envoyconfig.GenerateTarget(cfg, envoyconfig.TargetEnvoyGateway, envoyconfig.Kube{Name: "gopotency", Namespace: "shop",
		HTTPRoutes: []envoyconfig.HTTPRouteRef{{Name: "orders"}}, GRPCRoutes: []envoyconfig.HTTPRouteRef{{Name: "ledger"}}, Gateway: "shop"}, "the gRPC test")
	require.NoError(t, err)
	var docs []string
	for _, d := range strings.Split(string(egInput(t, true)), "\n---\n") {
		if !strings.Contains(d, "\nkind: EnvoyExtensionPolicy\n") && !strings.Contains(d, "\nkind: ClientTrafficPolicy\n") {
			docs = append(docs, d)
		}
	}
	docs = append(docs, string(policies), `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ledger, namespace: shop}
spec:
  parentRefs: [{name: shop}]
  hostnames: ["`+egHost+`"]
  rules:
  - matches: [{method: {service: gopotency.verify.v1.Echo}}]
    backendRefs: [{name: ledger, port: 50051}]
`, `apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: shop}
spec:
  clusterIP: `+egLedgerIP+`
  ports: [{name: grpc, port: 50051, protocol: TCP, appProtocol: kubernetes.io/h2c}]
`)
	dump, objects := egTranslate(t, []byte(strings.Join(docs, "\n---\n")))
	accepted(t, objects)
	for _, o := range objects["envoyExtensionPolicies"].([]any) {
		t.Logf("policy %v", o.(map[string]any)["metadata"].(map[string]any)["name"])
	}
	c := parseEG(t, dump)

	up, app := startEchoUpstream(t)
	s := &stack{}
	s.startApp(t, stackOptions{config: cfgPath, store: "memory://"})
	e := startEnvoyWith(t, func(a envoyrun.Addrs) []byte {
		a.GoPotency, a.App = s.app.GRPCAddr(), app
		return c.bootstrap(t, a)
	})
	addr := target(e)
	key := grpcKey(t)
	first := callEchoAt(t, addr, egHost, "eg", grpcmw.KeyMetadata, key)
	require.NoError(t, first.err)
	again := callEchoAt(t, addr, egHost, "eg", grpcmw.KeyMetadata, key)
	require.NoError(t, again.err)
	assert.Equal(t, "echo:eg", again.reply)
	assert.Equal(t, []string{"true"}, again.header.Get(grpcmw.ReplayedKey))
	assert.Equal(t, first.trailr, again.trailr)
	assert.Equal(t, 1, up.count("eg"))
	r := callEchoAt(t, addr, egHost, "fail:INTERNAL", grpcmw.KeyMetadata, grpcKey(t))
	assert.Equal(t, codes.Internal, status.Code(r.err))
	for range 2 {
		require.NoError(t, callEchoAt(t, addr, egHost, "eg-unkeyed").err)
	}
	assert.Equal(t, 2, up.count("eg-unkeyed"))
}

// TestGRPCServerStreamIsRecordedWhole: a keyed server-streaming call sends
// one message, like a unary call: it runs once, and a retry gets every
// message of the first answer.
func TestGRPCServerStreamIsRecordedWhole(t *testing.T) {
	up, addr, _ := startGRPCStack(t)
	key := grpcKey(t)
	var answers [][]string
	for range 2 {
		got, err := repeat(t, addr, key, "r")
		require.NoError(t, err)
		answers = append(answers, got)
	}
	assert.Equal(t, []string{"0:r", "1:r", "2:r"}, answers[0])
	assert.Equal(t, answers[0], answers[1])
	assert.Equal(t, 1, up.count("repeat:r"))
}

// TestIstioGatewayGRPC: an Istio gateway's EnvoyFilter generated with
// --grpc, through Istio's generator into a real Envoy: the route patch's
// policy (key required) reaches the gRPC filter, keyed calls run once and
// replay.
func TestIstioGatewayGRPC(t *testing.T) {
	vs := filepath.Join(t.TempDir(), "ledger.yaml")
	require.NoError(t, os.WriteFile(vs, []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ledger, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["ledger.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ledger, namespace: shop}
spec:
  hosts: ["ledger.example.com"]
  gateways: [ledger]
  http:
  - name: ledger-pay
    match: [{uri: {prefix: /gopotency.verify.v1.Echo/}}]
    route: [{destination: {host: ledger.shop.svc.cluster.local, port: {number: 50051}}}]
    retries: {attempts: 0}
`), 0o600))
	raw, err := os.ReadFile(vs)
	require.NoError(t, err)
	vss, err := envoyconfig.ParseVirtualServices(raw)
	require.NoError(t, err)
	cfgPath := filepath.Join(root(t), "deploy", "overlays", "istio-gateway", "gopotency.yaml")
	required := func(c *config.Config) {
		p := c.Default
		p.KeyRequired = true
		c.Policies["grpcpay"] = &p
	}
	cfg, err := config.Load([]string{"--config", cfgPath}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	required(cfg)
	e, err := cfg.RequireEnvoy()
	require.NoError(t, err)
	e.Routes = []config.EnvoyRoute{{Name: "ledger-pay", Policy: "grpcpay"}}
	ef, err := envoyconfig.GenerateTarget(cfg, envoyconfig.TargetIstioGateway, envoyconfig.Kube{Name: "gopotency-grpc", Namespace: "istio-system",
		Selector: map[string]string{"istio": "ingressgateway"}, VirtualServices: vss, GRPC: true}, "the gRPC gateway test")
	require.NoError(t, err)
	efPath := filepath.Join(t.TempDir(), "envoyfilter.yaml")
	require.NoError(t, os.WriteFile(efPath, ef, 0o600))
	x := runIstioXDS(t, "gateway", append([]string{efPath, vs, "pkg/e2e/testdata/istio/grpc.yaml"}, istioShared...)...)
	r := reduce(t, x, gatewayChain)
	for _, f := range []string{extProcID, envoyconfig.GRPCFilterName} {
		assert.Equal(t, []any{map[string]any{"key": "x-gopotency-policy", "value": "grpcpay"}},
			obj(r.route(t, "ledger-pay"), "typed_per_filter_config", f, "overrides")["grpc_initial_metadata"], f)
	}

	up, app := startEchoUpstream(t)
	s := &stack{}
	s.startApp(t, stackOptions{config: cfgPath, store: "memory://", configure: required})
	env := startEnvoyWith(t, func(a envoyrun.Addrs) []byte {
		a.GoPotency, a.App = s.app.GRPCAddr(), app
		return r.bootstrap(t, a, extProcClusterName)
	})
	addr, host := target(env), "ledger.example.com"
	missing := callEchoAt(t, addr, host, "gw")
	assert.Equal(t, codes.InvalidArgument, status.Code(missing.err), "the route's policy requires a key: %v", missing.err)
	assert.Equal(t, idempotency.ProblemFor(idempotency.ErrKeyMissing).Type, grpcmw.ProblemType(missing.err))
	key := grpcKey(t)
	first := callEchoAt(t, addr, host, "gw", grpcmw.KeyMetadata, key)
	require.NoError(t, first.err)
	again := callEchoAt(t, addr, host, "gw", grpcmw.KeyMetadata, key)
	require.NoError(t, again.err)
	assert.Equal(t, []string{"true"}, again.header.Get(grpcmw.ReplayedKey))
	assert.Equal(t, first.trailr, again.trailr)
	assert.Equal(t, 1, up.count("gw"))
}
