package e2e

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// boundClient is an HTTP client whose connections leave from ip (any
// 127.0.0.0/8 address works on Linux loopback).
func boundClient(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// TestAutoKeySourceAddress: anonymous callers with automatic keys scoped
// by their address (auto_key.source_address, no scope headers) through
// the real Envoy. Two clients on 127.0.0.1 and 127.0.0.2 sending the same
// body are two callers; each one's retry replays its own response. The
// generated HCM sets use_remote_address, as an edge Envoy should: a client
// cannot claim another's address with X-Forwarded-For. Without it (an
// Envoy behind a proxy, misconfigured) Envoy would believe the header.
func TestAutoKeySourceAddress(t *testing.T) {
	for _, edge := range []bool{true, false} {
		t.Run(map[bool]string{true: "generated", false: "without_use_remote_address"}[edge], func(t *testing.T) {
			up := newCounter()
			s := identityStack(t, up, withScope(t, map[string]any{
				"scope_headers": []any{},
				"auto_key":      map[string]any{"body": true, "source_address": true},
			}), func(e *envoyEdit) {
				assert.Contains(t, e.extProc()["request_attributes"], "source.address", "the generator sends the client address")
				assert.Equal(t, true, e.hcm()["use_remote_address"], "the generator runs Envoy as an edge")
				if !edge {
					delete(e.hcm(), "use_remote_address")
				}
			})
			one, two := boundClient(t, "127.0.0.1"), boundClient(t, "127.0.0.2")
			url := s.URL + "/orders"
			body := `{"item":"book","n":"` + itoa(int(time.Now().UnixNano())) + `"}`

			first := doWith(t, one, "POST", url, "", body)
			require.Equal(t, 201, first.Status, "body: %s", first.Body)
			other := doWith(t, two, "POST", url, "", body)
			require.Equal(t, 201, other.Status, "body: %s", other.Body)
			assert.Empty(t, other.Header.Get("Idempotent-Replayed"), "another address is another caller")
			assert.Equal(t, int64(2), up.total.Load())
			for _, c := range []struct {
				client *http.Client
				want   result
			}{{one, first}, {two, other}} {
				again := doWith(t, c.client, "POST", url, "", body)
				require.Equal(t, 201, again.Status)
				assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"), "a retry from the same address replays")
				assert.Equal(t, string(c.want.Body), string(again.Body))
			}
			assert.Equal(t, int64(2), up.total.Load())

			// 127.0.0.2 claims to be 127.0.0.1 with a new body.
			claimed := `{"item":"pen","n":"` + itoa(int(time.Now().UnixNano())) + `"}`
			mine := doWith(t, one, "POST", url, "", claimed)
			require.Equal(t, 201, mine.Status)
			forged := doWith(t, two, "POST", url, "", claimed, "X-Forwarded-For", "127.0.0.1")
			require.Equal(t, 201, forged.Status)
			if edge {
				assert.Empty(t, forged.Header.Get("Idempotent-Replayed"), "use_remote_address: the connection's address counts, not the header")
				assert.Equal(t, int64(4), up.total.Load())
			} else {
				assert.Equal(t, "true", forged.Header.Get("Idempotent-Replayed"), "without use_remote_address, X-Forwarded-For chooses source.address")
				assert.Equal(t, string(mine.Body), string(forged.Body))
				assert.Equal(t, int64(3), up.total.Load())
			}
		})
	}
}
