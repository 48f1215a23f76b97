package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v3"
)

// collector is an OTLP/gRPC trace collector: it keeps every span it is
// sent, with its resource's service.name.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []span
}

type span struct {
	service string
	*tracepb.Span
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		svc := attr(rs.GetResource().GetAttributes(), "service.name")
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, span{svc, s})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) all() []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]span(nil), c.spans...)
}

func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// startCollector serves the collector on loopback and returns its address.
func startCollector(t *testing.T) (*collector, string) {
	c := &collector{}
	ln := listen(t)
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, ln.Addr().String()
}

// withEnvoyTracing turns on Envoy's OpenTelemetry tracer in every HTTP
// connection manager of cfg, exporting to collector over OTLP/gRPC, and
// has it flush at once rather than every 5s.
func withEnvoyTracing(t *testing.T, cfg []byte, collector string) []byte {
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal(cfg, &doc))
	host, port, _ := strings.Cut(collector, ":")
	sr := doc["static_resources"].(map[string]any)
	sr["clusters"] = append(sr["clusters"].([]any), map[string]any{
		"name": "otel_collector", "type": "STATIC", "connect_timeout": "1s",
		"typed_extension_protocol_options": map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
			"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
			"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
		}},
		"load_assignment": map[string]any{"cluster_name": "otel_collector", "endpoints": []any{map[string]any{"lb_endpoints": []any{
			map[string]any{"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}}},
		}}}},
	})
	n := 0
	for _, l := range sr["listeners"].([]any) {
		for _, fc := range l.(map[string]any)["filter_chains"].([]any) {
			for _, f := range fc.(map[string]any)["filters"].([]any) {
				f := f.(map[string]any)
				if f["name"] != "envoy.filters.network.http_connection_manager" {
					continue
				}
				f["typed_config"].(map[string]any)["tracing"] = map[string]any{
					"random_sampling": map[string]any{"value": 100},
					"provider": map[string]any{"name": "envoy.tracers.opentelemetry", "typed_config": map[string]any{
						"@type":        "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
						"grpc_service": map[string]any{"envoy_grpc": map[string]any{"cluster_name": "otel_collector"}, "timeout": "1s"},
						"service_name": "envoy",
					}},
				}
				n++
			}
		}
	}
	require.Positive(t, n, "no http_connection_manager to trace")
	doc["layered_runtime"] = map[string]any{"layers": []any{map[string]any{"name": "static", "static_layer": map[string]any{
		"tracing.opentelemetry.flush_interval_ms": 100, "tracing.opentelemetry.min_flush_spans": 1,
	}}}}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return out
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// TestTracingJoinsEnvoysTrace: with Envoy's OpenTelemetry tracer on and
// gopotency exporting to the same collector, a keyed request's ext_proc
// stream span descends from Envoy's span (same trace, parent chain), the
// store calls are its children, the decision is on it, and no attribute
// carries the key.
func TestTracingJoinsEnvoysTrace(t *testing.T) {
	col, colAddr := startCollector(t)
	base, err := os.ReadFile(filepath.Join(root(t), "envoy", "gopotency.yaml"))
	require.NoError(t, err)
	cfgPath := filepath.Join(t.TempDir(), "gopotency.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(base, "\ntracing:\n  endpoint: http://%s\n  protocol: grpc\n", colAddr), 0o600))
	up := newCounter()
	s := startStack(t, stackOptions{
		upstream: up, config: cfgPath,
		tweak: func(b []byte) []byte { return withEnvoyTracing(t, b, colAddr) },
	})

	key := "trace-" + itoa(int(time.Now().UnixNano()))
	first := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, 201, first.Status, "body: %s", first.Body)
	again := do(t, "POST", s.URL+"/orders", key, `{"item":"book"}`)
	require.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	other := do(t, "POST", s.URL+"/orders", key, `{"item":"car"}`)
	require.Equal(t, 422, other.Status)
	require.Equal(t, 1, up.count(key))
	// A chunked body goes headers first in the shipped config (the others
	// above went body-first): the other shape of stream.
	chunked := form{client: http.DefaultClient, guarded: s.URL + "/orders"}.post(t, key+"-chunked", `{"item":"pen"}`, true)
	require.Equal(t, 201, chunked.Status, "body: %s", chunked.Body)
	s.stop() // flushes gopotency's spans

	const process = "envoy.service.ext_proc.v3.ExternalProcessor/Process"
	var spans []span
	// Wait until the four stream spans and every ancestor of each have
	// arrived: Envoy and gopotency flush on their own schedules.
	// Not fatal: the checks below say what is missing.
	assert.Eventually(t, func() bool {
		spans = col.all()
		ids := map[string]string{}
		for _, sp := range spans {
			ids[hexID(sp.SpanId)] = hexID(sp.ParentSpanId)
		}
		streams := 0
		for _, sp := range spans {
			if sp.service != "gopotency" || sp.Name != process {
				continue
			}
			p := hexID(sp.ParentSpanId)
			for range len(spans) {
				parent, ok := ids[p]
				if !ok || parent == "" {
					break
				}
				p = parent
			}
			if _, ok := ids[p]; ok {
				streams++ // the chain reached a root
			}
		}
		return streams == 4
	}, 20*time.Second, 100*time.Millisecond, "four stream spans with their ancestors, from Envoy and gopotency")

	byID := map[string]span{}
	for _, sp := range spans {
		byID[hexID(sp.SpanId)] = sp
	}
	outcomes := map[string]int{}
	for _, sp := range spans {
		if sp.service != "gopotency" || sp.Name != process {
			continue
		}
		outcome := attr(sp.Attributes, "gopotency.outcome")
		outcomes[outcome]++
		// The chain of parents reaches Envoy's own span, in one trace.
		var chain []string
		envoyAncestor := false
		for p := hexID(sp.ParentSpanId); p != ""; {
			parent, ok := byID[p]
			require.True(t, ok, "%s (%s): parent %s was not exported (chain %v)", sp.Name, outcome, p, chain)
			assert.Equal(t, hexID(sp.TraceId), hexID(parent.TraceId), "one trace")
			chain = append(chain, parent.service+":"+parent.Name)
			envoyAncestor = envoyAncestor || parent.service == "envoy"
			p = hexID(parent.ParentSpanId)
		}
		assert.True(t, envoyAncestor, "the stream span (%s) descends from Envoy's span; chain %v", outcome, chain)
		// Envoy's ext_proc filter opens its gRPC stream under a client
		// span of its own and sends that span's traceparent.
		if assert.NotEmpty(t, chain) {
			assert.Equal(t, "envoy:async "+strings.ReplaceAll(process, "/", ".")+" egress", chain[0])
		}
		t.Logf("%s stream span: parents %v", outcome, chain)
		assert.Equal(t, tracepb.Span_SPAN_KIND_SERVER, sp.Kind)
		assert.Equal(t, "default", attr(sp.Attributes, "gopotency.policy"), outcome)
		// Each keyed request asked the store: an acquire child.
		var ops []string
		for _, c := range spans {
			if hexID(c.ParentSpanId) == hexID(sp.SpanId) {
				ops = append(ops, attr(c.Attributes, "gopotency.store.operation"))
			}
		}
		assert.Contains(t, ops, "acquire", "%s: store spans are the stream span's children", outcome)
		if outcome == "reject" {
			assert.Equal(t, "key-reused", attr(sp.Attributes, "gopotency.problem.type"))
		}
	}
	assert.Equal(t, map[string]int{"proceed": 2, "replay": 1, "reject": 1}, outcomes)
	// The first requests' settlements: a complete under each stream span.
	completes := 0
	for _, sp := range spans {
		if attr(sp.Attributes, "gopotency.store.operation") == "complete" {
			completes++
			assert.Equal(t, process, byID[hexID(sp.ParentSpanId)].Name)
		}
	}
	assert.Equal(t, 2, completes)
	// Envoy's health checks (one at start, then every second) are no
	// trace of anyone's.
	for _, sp := range spans {
		assert.NotContains(t, sp.Name, "grpc.health", "%s span", sp.service)
	}
	// No attribute of any span, Envoy's included, carries the key.
	for _, sp := range spans {
		for _, kv := range sp.Attributes {
			assert.NotContains(t, kv.GetValue().String(), key, "%s/%s: attribute %s", sp.service, sp.Name, kv.GetKey())
		}
	}
}
