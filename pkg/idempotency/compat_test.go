package idempotency_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// TestHTTPKeysPinned pins the storage key, fingerprint and automatic key of
// a sample HTTP request. Records already in a store were written under
// these values: if any changes, an upgrade re-runs in-flight and completed
// requests (or rejects their retries as mismatches). A failure here means
// a compatibility break, not a test to update.
func TestHTTPKeysPinned(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.FingerprintHeaders = []string{"Content-Type"}
	r := &idempotency.Request{
		Method: http.MethodPost,
		Path:   "/v1/payments?currency=EUR",
		Header: http.Header{
			"Authorization":   {"Bearer alice"},
			"Content-Type":    {"application/json"},
			"Idempotency-Key": {`"pay-2026-0001"`},
		},
		Body: []byte(`{"to": "acct_42", "amount": 1250}`),
	}
	key, err := idempotency.ParseKey(r.Header.Get("Idempotency-Key"))
	require.NoError(t, err)
	require.Equal(t, "pay-2026-0001", key)

	require.Equal(t, "gatOFyr8vExgaf6MpqaM6YU8zjgXxEuLyIFaeqDCnDo", idempotency.StorageKey(idempotency.Scope(&p, r), key), "storage key, scoped")
	require.Equal(t, "VHmOrHgonGy2DxNK_7i-KouTybN6wjqENGeSWvx4fwA", idempotency.StorageKey("", key), "storage key, anonymous")
	require.Equal(t, "7d7697f8dcf4beffa9e717080b9bda5cd578ecb54e5c771b2c17a81cb6d0a5af", idempotency.FingerprintOf(&p, r), "fingerprint over the body")
	p.CanonicalJSON = true
	require.Equal(t, "462036d3537d57d75e97b8d03ed59930a092bd2fa743af4dd1ee65df7c3d4bb9", idempotency.FingerprintOf(&p, r), "fingerprint over canonical JSON")
	p.Fingerprint = idempotency.FingerprintHeadersOnly
	require.Equal(t, "d35ddc178c3509e3d99a2a0b3a7092e5fcd4326bba39296e9c829040d92e0fc6", idempotency.FingerprintOf(&p, r), "fingerprint of the headers only")
	require.Equal(t, "auto.4e16caf93c882313c4cfd3897fdf0aa8b6593aa30903d4f61a8cc7e419974a8f", idempotency.DeriveKey(&idempotency.AutoKey{JSONFields: []string{"to", "amount"}}, r), "automatic key")
}
