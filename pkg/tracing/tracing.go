// Package tracing puts GoPotency in its callers' OpenTelemetry traces: a
// span per ext_proc stream, the child of the span Envoy sends in the
// stream's gRPC metadata (traceparent), with the decision as attributes;
// a span per store call, the child of whatever span its context holds; a
// span per request for the library middleware, joining the caller's
// trace from its headers as otelhttp does.
//
// No attribute carries the idempotency key, the storage key, a
// fingerprint or a credential: only the policy's name, the outcome, the
// problem type, the store operation and its result.
//
// The core (package idempotency) stays free of OpenTelemetry: this
// package wraps a Store and hooks into the ext_proc server from outside.
package tracing

import (
	"context"
	"fmt"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/gopotency/gopotency/pkg/extproc"
)

// ScopeName is the instrumentation scope of GoPotency's spans.
const ScopeName = "github.com/gopotency/gopotency"

// The attributes GoPotency sets.
const (
	// AttrPolicy is the policy's name (extproc.DefaultPolicyName for
	// default_policy).
	AttrPolicy = attribute.Key("gopotency.policy")
	// AttrOutcome is pass, proceed, replay or reject.
	AttrOutcome = attribute.Key("gopotency.outcome")
	// AttrProblem is a reject's problem type (key-reused, …).
	AttrProblem = attribute.Key("gopotency.problem.type")
	// AttrStoreOp is the store operation (acquire, complete, …).
	AttrStoreOp = attribute.Key("gopotency.store.operation")
	// AttrStoreResult is what an acquire found (acquired, completed, …).
	AttrStoreResult = attribute.Key("gopotency.store.result")
	// AttrReplayed marks a library response that was a replay.
	AttrReplayed = attribute.Key("gopotency.replayed")
)

// Options say where spans go.
type Options struct {
	// URL is the OTLP endpoint spans are sent to: for grpc host and port
	// (http:// is plaintext), for http/protobuf the whole URL with its
	// path (…/v1/traces).
	URL string
	// Protocol is "grpc" or "http/protobuf".
	Protocol string
	// ServiceVersion is the resource's service.version.
	ServiceVersion string
}

// Tracer owns a TracerProvider exporting over OTLP. The exporter reads
// the other OTEL_EXPORTER_OTLP_* variables (headers, certificates,
// timeout, compression) itself; the SDK reads OTEL_TRACES_SAMPLER (the
// default follows the caller's sampling decision: Envoy's), and the
// resource OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
type Tracer struct {
	Provider   *sdktrace.TracerProvider
	Propagator propagation.TextMapPropagator
}

// New starts the exporter. Nothing is dialled yet: spans are batched
// and a collector that is down costs dropped spans, never a request.
func New(ctx context.Context, o Options) (*Tracer, error) {
	var exp sdktrace.SpanExporter
	var err error
	switch o.Protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(o.URL))
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(o.URL))
	default:
		err = fmt.Errorf("protocol %q is not grpc or http/protobuf", o.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// Later sources win: the environment's service name over ours.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "gopotency"), attribute.String("service.version", o.ServiceVersion)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return &Tracer{
		Provider:   sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)),
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}, nil
}

// Shutdown sends the spans still batched and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.Provider.Shutdown(ctx) }

// ServerOption makes one span per ext_proc stream, the child of the span
// context Envoy puts in the stream's metadata. Other RPCs (health
// checks, which Envoy sends every second with no trace) get none.
func ServerOption(tp trace.TracerProvider, prop propagation.TextMapPropagator) grpc.ServerOption {
	process := "/" + extprocv3.ExternalProcessor_ServiceDesc.ServiceName + "/Process"
	return grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop),
		// Metrics stay Prometheus's (package metrics).
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool { return info.FullMethodName == process }),
	))
}

// Decided is an extproc.Options.Decided that puts the decision on the
// stream's span.
func Decided(ctx context.Context, d extproc.Decision) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{AttrOutcome.String(d.Outcome)}
	if d.Policy != "" {
		attrs = append(attrs, AttrPolicy.String(d.Policy))
	}
	if d.Problem != "" {
		attrs = append(attrs, AttrProblem.String(d.Problem))
	}
	span.SetAttributes(attrs...)
}
