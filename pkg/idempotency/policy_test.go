package idempotency_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestStatusSet(t *testing.T) {
	s := idempotency.StatusSet{"5xx", " 408 ", "4XX", "201"}
	for _, in := range []int{500, 503, 599, 408, 400, 404, 499, 201} {
		assert.True(t, s.Contains(in), "%d should be in the set", in)
	}
	for _, out := range []int{200, 202, 302, 600, 0, -1} {
		assert.False(t, s.Contains(out), "%d should not be in the set", out)
	}
	assert.False(t, idempotency.StatusSet{}.Contains(500))

	for _, bad := range []string{"", "6xx", "0xx", "x5x", "5x", "5xxx", "99", "600", "abc", "2 00"} {
		p := idempotency.DefaultPolicy()
		p.DoNotStore = idempotency.StatusSet{"500", bad}
		err := p.Validate()
		require.Error(t, err, "%q should be rejected", bad)
		assert.Contains(t, err.Error(), "do_not_store: ")
		assert.False(t, p.DoNotStore.Contains(600), "an invalid item matches nothing")
	}
}

func TestDefaultPolicy(t *testing.T) {
	p := idempotency.DefaultPolicy()
	require.NoError(t, p.Validate())
	assert.True(t, p.Applies(http.MethodPost))
	assert.True(t, p.Applies(http.MethodPatch))
	assert.False(t, p.Applies(http.MethodGet))
	assert.False(t, p.Applies("post"), "methods are case-sensitive")
	assert.Equal(t, 24*time.Hour, p.Retention)
	for _, s := range []int{500, 502, 503, 504, 408, 429} {
		assert.False(t, p.Stores(s), "%d must not be stored by default", s)
	}
	for _, s := range []int{200, 201, 204, 400, 404, 409, 422} {
		assert.True(t, p.Stores(s), "%d must be stored by default", s)
	}
}

func TestPolicyNeedsBody(t *testing.T) {
	p := idempotency.DefaultPolicy()
	keyed := &idempotency.Request{Header: http.Header{"Idempotency-Key": {"k"}}}
	keyless := &idempotency.Request{Header: http.Header{}}
	assert.True(t, p.NeedsBody(keyed))
	assert.True(t, p.NeedsBody(keyless))

	p.Fingerprint = idempotency.FingerprintHeadersOnly
	assert.False(t, p.NeedsBody(keyed))
	assert.False(t, p.NeedsBody(keyless))

	p.AutoKey = &idempotency.AutoKey{Headers: []string{"X-Client"}}
	assert.False(t, p.NeedsBody(keyless), "a header-only auto key does not need the body")
	p.AutoKey = &idempotency.AutoKey{JSONFields: []string{"id"}}
	assert.True(t, p.NeedsBody(keyless), "an auto key from body fields needs the body")
	assert.False(t, p.NeedsBody(keyed), "a sent key makes the auto key irrelevant")
}

func TestPolicyValidateReportsEveryProblem(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.Methods = []string{"post", "GET"}
	p.KeyHeader = "Idempotency Key"
	p.Retention = 0
	p.Lease = time.Millisecond
	p.Fingerprint = "sometimes"
	p.ScopeHeaders = []string{"Authorization", "X:Tenant"}
	p.MaxResponseBody = 0
	p.WaitInFlight = -time.Second
	p.AutoKey = &idempotency.AutoKey{}

	err := p.Validate()
	require.Error(t, err)
	var joined interface{ Unwrap() []error }
	require.True(t, errors.As(err, &joined))
	assert.Len(t, joined.Unwrap(), 9)
	for _, want := range []string{`"post"`, `"Idempotency Key"`, "retention", "lease", `"sometimes"`, `"X:Tenant"`, "max_response_body", "wait_in_flight", "auto_key"} {
		assert.Contains(t, err.Error(), want)
	}

	p = idempotency.DefaultPolicy()
	p.Methods = nil
	assert.ErrorContains(t, p.Validate(), "at least one method")
}
