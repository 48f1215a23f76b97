package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestCheckKey(t *testing.T) {
	long := strings.Repeat("k", idempotency.MaxKeyLength)
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"order-42", true},
		{"commande n° 42 for Zoë", true},
		{"a b", true},
		{long, true},
		{long + "k", false},
		{"", false},
		{"a\nb", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{"a\u0085b", false}, // C1 control (NEL)
		{"a\xffb", false},   // not UTF-8
	} {
		err := idempotency.CheckKey(tc.key)
		if tc.ok {
			require.NoError(t, err, "%q", tc.key)
		} else {
			require.ErrorIs(t, err, idempotency.ErrKeyMalformed, "%q", tc.key)
		}
	}
}

func op(key string, payload string) idempotency.Operation {
	return idempotency.Operation{Namespace: "test", Name: "/pkg.Svc/Create", Key: key, Payload: []byte(payload)}
}

func (f *fixture) beginOp(o idempotency.Operation) idempotency.Decision {
	return f.eng.BeginOperation(context.Background(), &f.pol, o)
}

func TestOperationLifecycle(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	ctx := context.Background()

	d := f.beginOp(op("k1", "a"))
	require.Equal(t, idempotency.Proceed, d.Kind)
	dup := f.beginOp(op("k1", "a"))
	requireReject(t, dup, http.StatusConflict, "request-in-progress")
	require.NoError(t, d.Lease.Complete(ctx, response(200, "result", "Content-Type", "application/json")))

	replay := f.beginOp(op("k1", "a"))
	require.Equal(t, idempotency.Replay, replay.Kind)
	require.Equal(t, "result", string(replay.Record.Body))

	requireReject(t, f.beginOp(op("k1", "b")), http.StatusUnprocessableEntity, "key-reused")
	other := op("k1", "a")
	other.Name = "/pkg.Svc/Delete"
	requireReject(t, f.beginOp(other), http.StatusUnprocessableEntity, "key-reused")

	decided, _, _, _ := rec.snapshot()
	require.Equal(t, []string{"proceed", "request-in-progress", "replay", "key-reused", "key-reused"}, decided)
}

// Namespaces and scopes separate records; operations never meet HTTP
// requests with the same key.
func TestOperationKeySpaces(t *testing.T) {
	f := newFixture(t)
	base := op("shared", "a")
	for name, o := range map[string]idempotency.Operation{
		"namespace": {Namespace: "other", Name: base.Name, Key: base.Key, Payload: base.Payload},
		"scope":     {Namespace: base.Namespace, Name: base.Name, Key: base.Key, Payload: base.Payload, Scope: []string{"tenant-1"}},
		"scope2":    {Namespace: base.Namespace, Name: base.Name, Key: base.Key, Payload: base.Payload, Scope: []string{"tenant-", "1"}},
		"base":      base,
	} {
		d := f.beginOp(o)
		require.Equal(t, idempotency.Proceed, d.Kind, name)
	}
	require.Equal(t, idempotency.Proceed, f.begin(t, post("shared", "a")).Kind, "an HTTP request with the same key")
	require.NotEqual(t, idempotency.StorageKey("", "shared"), base.StorageKey())
}

func TestOperationKeyRules(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, idempotency.Pass, f.beginOp(op("", "a")).Kind)
	f.pol.KeyRequired = true
	requireReject(t, f.beginOp(op("", "a")), http.StatusBadRequest, "key-missing")
	d := f.beginOp(op("a\tb", "a"))
	requireReject(t, d, http.StatusBadRequest, "key-malformed")
	require.Contains(t, d.Problem.Detail, "control character")
	require.Equal(t, idempotency.Proceed, f.beginOp(op("a b", "a")).Kind)
}

func TestOperationFingerprintNone(t *testing.T) {
	f := newFixture(t)
	f.pol.Fingerprint = idempotency.FingerprintNone
	d := f.beginOp(op("k", "a"))
	require.NoError(t, d.Lease.Complete(context.Background(), response(200, "x")))
	require.Equal(t, idempotency.Replay, f.beginOp(op("k", "other payload")).Kind)
}

func TestOperationStoreDown(t *testing.T) {
	eng := idempotency.New(stubStore{})
	p := idempotency.DefaultPolicy()
	d := eng.BeginOperation(context.Background(), &p, op("k", "a"))
	requireReject(t, d, http.StatusServiceUnavailable, "store-unavailable")
	require.True(t, errors.Is(d.Err, idempotency.ErrStoreUnavailable))
	p.FailOpen = true
	require.Equal(t, idempotency.Pass, eng.BeginOperation(context.Background(), &p, op("k", "a")).Kind)
}
