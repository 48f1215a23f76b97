package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

func TestProblemTable(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		slug       string
		retryAfter bool
	}{
		{idempotency.ErrKeyMissing, 400, "key-missing", false},
		{idempotency.ErrKeyMalformed, 400, "key-malformed", false},
		{idempotency.ErrInFlight, 409, "request-in-progress", false},
		{idempotency.ErrMismatch, 422, "key-reused", false},
		{idempotency.ErrRecordTooLarge, 413, "response-too-large", false},
		{idempotency.ErrRequestTooLarge, 413, "request-too-large", false},
		{idempotency.ErrStoreUnavailable, 503, "store-unavailable", true},
	}
	seen := map[string]error{}
	for _, c := range cases {
		t.Run(c.slug, func(t *testing.T) {
			const secret = "dial tcp 10.9.8.7:5432: password=hunter2"
			p := idempotency.ProblemFor(fmt.Errorf("layer: %w: %s", c.err, secret))
			assert.Equal(t, c.status, p.Status)
			assert.Equal(t, idempotency.ProblemTypeBase+c.slug, p.Type)
			assert.Equal(t, c.slug, p.Slug())
			assert.NotEmpty(t, p.Title)
			assert.NotEmpty(t, p.Detail)
			assert.Equal(t, c.retryAfter, p.RetryAfter > 0)
			// Only the two client-input errors echo the message; nothing
			// else may leak internals.
			clientDetail := errors.Is(c.err, idempotency.ErrKeyMalformed) || errors.Is(c.err, idempotency.ErrRequestTooLarge)
			assert.Equal(t, clientDetail, strings.Contains(p.Detail, "hunter2"), "detail: %q", p.Detail)

			if prev, dup := seen[p.Type]; dup {
				t.Errorf("%v and %v share type %s", prev, c.err, p.Type)
			}
			seen[p.Type] = c.err
		})
	}

	t.Run("deadline is store-unavailable", func(t *testing.T) {
		p := idempotency.ProblemFor(fmt.Errorf("acquire: %w", context.DeadlineExceeded))
		assert.Equal(t, 503, p.Status)
		assert.Equal(t, "store-unavailable", p.Slug())
	})
	t.Run("unknown errors are 500 without detail", func(t *testing.T) {
		for _, err := range []error{errors.New("secret internal state"), idempotency.ErrLeaseLost, idempotency.ErrNotFound, context.Canceled, nil} {
			p := idempotency.ProblemFor(err)
			assert.Equal(t, 500, p.Status)
			assert.Equal(t, "internal", p.Slug())
			if err != nil {
				assert.NotContains(t, string(p.Body()), err.Error())
			}
			assert.Zero(t, p.RetryAfter)
		}
	})
}

func TestProblemHeaders(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string // "" means no Retry-After
	}{
		{0, ""},
		{-time.Second, ""},
		{time.Millisecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{20 * time.Second, "20"},
	}
	for _, c := range cases {
		p := &idempotency.Problem{Status: 409, Type: idempotency.ProblemTypeBase + "x", RetryAfter: c.d}
		h := p.Headers()
		require.NotEmpty(t, h)
		assert.Equal(t, idempotency.Header{Name: "Content-Type", Value: "application/problem+json"}, h[0])
		if c.want == "" {
			assert.Len(t, h, 1, "%v", c.d)
			continue
		}
		require.Len(t, h, 2, "%v", c.d)
		assert.Equal(t, idempotency.Header{Name: "Retry-After", Value: c.want}, h[1], "%v", c.d)
	}
}

func TestProblemBody(t *testing.T) {
	p := idempotency.ProblemFor(fmt.Errorf("%w: \"quote\" and \\ and \n", idempotency.ErrKeyMalformed))
	p.RetryAfter = 3 * time.Second
	var got map[string]any
	require.NoError(t, json.Unmarshal(p.Body(), &got))
	assert.Equal(t, p.Type, got["type"])
	assert.Equal(t, p.Title, got["title"])
	assert.EqualValues(t, 400, got["status"])
	assert.Equal(t, p.Detail, got["detail"])
	assert.NotContains(t, got, "RetryAfter", "Retry-After travels as a header only")
	assert.Len(t, got, 4)

	bare := &idempotency.Problem{Status: 500, Type: "about:blank", Title: "t"}
	require.NoError(t, json.Unmarshal(bare.Body(), &got))
	assert.NotContains(t, string(bare.Body()), "detail", "empty detail omitted")
	assert.NotPanics(t, func() { _ = bare.Slug() }, "a problem built outside the table has a slug too")
}
