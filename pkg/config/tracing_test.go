package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTracingLayers: tracing is off by default; the file turns it on; the
// standard OpenTelemetry variables win over the file, as the GOPOTENCY_*
// ones do, with the OTLP rules for the endpoint's path.
func TestTracingLayers(t *testing.T) {
	file := writeYAML(t, "tracing:\n  endpoint: http://file:4317\n  protocol: grpc\n")
	for _, tc := range []struct {
		name     string
		env      map[string]string
		args     []string
		url, pro string
	}{
		{name: "off by default"},
		{name: "file", args: []string{"--config", file}, url: "http://file:4317", pro: "grpc"},
		{name: "environment, http default path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318/"},
			url: "http://env:4318/v1/traces", pro: "http/protobuf"},
		{name: "environment over the file", args: []string{"--config", file},
			env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://env:4317"}, url: "https://env:4317", pro: "grpc"},
		{name: "protocol from the environment", args: []string{"--config", file},
			env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, url: "http://file:4317/v1/traces", pro: "http/protobuf"},
		{name: "the signal's endpoint as given", env: map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://generic:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:4318/custom"},
			url: "http://traces:4318/custom", pro: "http/protobuf"},
		{name: "the signal's protocol first", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, url: "http://c:4317", pro: "grpc"},
		{name: "OTEL_SDK_DISABLED", args: []string{"--config", file}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "OTEL_TRACES_EXPORTER none", args: []string{"--config", file}, env: map[string]string{"OTEL_TRACES_EXPORTER": "none"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.env, tc.args...)
			require.NoError(t, err)
			require.Equal(t, tc.url, c.Tracing.URL)
			require.Equal(t, tc.url != "", c.Tracing.Enabled())
			if tc.url != "" {
				require.Equal(t, tc.pro, c.Tracing.Protocol)
			}
		})
	}
}

func TestTracingBadSettings(t *testing.T) {
	_, err := load(t, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"})
	requireErrorMentions(t, err, `OTEL_TRACES_EXPORTER="zipkin"`, `"http/json" is not grpc or http/protobuf`, `ENDPOINT) is not an http:// or https:// URL with a host`)
	_, err = load(t, nil, "--config", writeYAML(t, "tracing:\n  endpoint: http://c:4317\n  protocl: grpc\n"))
	requireErrorMentions(t, err, "protocl")
}
