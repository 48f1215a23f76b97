package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Tracing is the tracing section: OpenTelemetry traces sent over OTLP.
// It is off unless an endpoint is set, here or in the standard
// environment variables, which win over the file as every other
// environment variable does (ApplyEnv).
type Tracing struct {
	// Endpoint is the OTLP collector's base URL, as
	// OTEL_EXPORTER_OTLP_ENDPOINT takes it (http://collector:4318; the
	// http/protobuf protocol appends /v1/traces).
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc or http/protobuf (the OpenTelemetry default).
	Protocol string `yaml:"protocol"`
	// URL is where spans go, resolved by Load: Endpoint with the
	// signal's path, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as given.
	URL string `yaml:"-"`
}

// Tracing protocols.
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http/protobuf"
)

// Enabled reports whether spans are exported.
func (t Tracing) Enabled() bool { return t.URL != "" }

// applyEnv applies the OpenTelemetry environment variables over the
// file's tracing section and resolves URL. The exporter reads the rest
// of them (headers, certificates, timeout, compression) itself.
func (t *Tracing) applyEnv(getenv func(string) string) []error {
	var errs []error
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		*t = Tracing{}
		return nil
	}
	switch exp := getenv("OTEL_TRACES_EXPORTER"); exp {
	case "", "otlp":
	case "none":
		*t = Tracing{}
		return nil
	default:
		errs = append(errs, fmt.Errorf("tracing: OTEL_TRACES_EXPORTER=%q: gopotency exports otlp or none", exp))
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(name); v != "" {
			t.Protocol = v
			break
		}
	}
	if t.Protocol == "" {
		t.Protocol = TracingHTTP
	}
	if t.Protocol != TracingGRPC && t.Protocol != TracingHTTP {
		errs = append(errs, fmt.Errorf("tracing.protocol (OTEL_EXPORTER_OTLP_PROTOCOL): %q is not grpc or http/protobuf", t.Protocol))
	}
	// The signal's own endpoint is a whole URL; the generic one is a base
	// the HTTP exporter appends the signal's path to (the OTLP spec's rule).
	signal := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if e := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); e != "" {
		t.Endpoint = e
	}
	t.URL = ""
	switch {
	case signal != "":
		t.URL = signal
	case t.Endpoint != "" && t.Protocol == TracingHTTP:
		t.URL = strings.TrimSuffix(t.Endpoint, "/") + "/v1/traces"
	case t.Endpoint != "":
		t.URL = t.Endpoint
	}
	if t.URL != "" {
		u, err := url.Parse(t.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The value is not shown: an endpoint may carry a token.
			errs = append(errs, errors.New("tracing.endpoint (OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT) is not an http:// or https:// URL with a host"))
		}
	}
	return errs
}
