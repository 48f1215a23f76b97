package idempotency_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func hdrs(kv ...string) []idempotency.Header {
	var out []idempotency.Header
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, idempotency.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestReplayableHeaders(t *testing.T) {
	def := idempotency.DefaultPolicy()
	noDeny := def
	noDeny.ReplayDenylist = nil
	allow := def
	allow.ReplayAllowlist = []string{"content-type", "X-Request-Id", "SET-COOKIE"}

	cases := []struct {
		name string
		p    idempotency.Policy
		in   []idempotency.Header
		want []idempotency.Header
	}{
		{
			name: "hop-by-hop dropped",
			p:    noDeny,
			in: hdrs("Connection", "keep-alive", "Keep-Alive", "timeout=5", "Proxy-Connection", "x", "TE", "trailers",
				"Trailer", "X-Sum", "Transfer-Encoding", "chunked", "Upgrade", "h2c", "Content-Length", "12",
				"Idempotent-Replayed", "true", "Content-Type", "application/json"),
			want: hdrs("Content-Type", "application/json"),
		},
		{
			name: "headers named by Connection dropped",
			p:    noDeny,
			in:   hdrs("X-Hop", "1", "Connection", "close, X-Hop ,x-other", "X-Other", "2", "X-Keep", "3"),
			want: hdrs("X-Keep", "3"),
		},
		{
			name: "default denylist, any case",
			p:    def,
			in: hdrs("set-cookie", "a=1", "WWW-Authenticate", "Basic", "Date", "Mon", "server", "envoy",
				"X-Envoy-Upstream-Service-Time", "3", "Location", "/v1/orders/7"),
			want: hdrs("Location", "/v1/orders/7"),
		},
		{
			name: "pseudo headers dropped",
			p:    noDeny,
			in:   hdrs(":status", "201", ":authority", "x", "Content-Type", "text/plain"),
			want: hdrs("Content-Type", "text/plain"),
		},
		{
			name: "repeated Set-Cookie kept in order, never joined",
			p:    noDeny,
			in:   hdrs("Set-Cookie", "a=1; Path=/", "X-Mid", "m", "set-cookie", "b=2", "Set-Cookie", "c=3, d=4"),
			want: hdrs("Set-Cookie", "a=1; Path=/", "X-Mid", "m", "Set-Cookie", "b=2", "Set-Cookie", "c=3, d=4"),
		},
		{
			name: "names canonicalised, values untouched",
			p:    def,
			in:   hdrs("content-type", "Application/JSON ", "x-request-id", "AbC"),
			want: hdrs("Content-Type", "Application/JSON ", "X-Request-Id", "AbC"),
		},
		{
			name: "allowlist keeps only listed, denylist still wins",
			p:    allow,
			in:   hdrs("Content-Type", "a", "Location", "/x", "x-request-id", "r", "Set-Cookie", "s=1", "Connection", "close"),
			want: hdrs("Content-Type", "a", "X-Request-Id", "r"),
		},
		{
			name: "nothing in, nothing out",
			p:    def,
			in:   nil,
			want: []idempotency.Header{},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := idempotency.ReplayableHeaders(&c.p, c.in)
			if len(c.want) == 0 {
				assert.Empty(t, got)
				return
			}
			assert.Equal(t, c.want, got)
		})
	}
}
