package idempotency_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

const orderJSON = `{"amount":1000,"currency":"eur"}`

// Each test below is one row of the behaviour table in DESIGN.md.

func TestBeginMethodNotGuarded(t *testing.T) {
	f := newFixture(t)
	for _, key := range []string{"k1", `"unterminated`} {
		r := request("GET", "/v1/orders", "", "Idempotency-Key", key)
		d := f.begin(t, r)
		assert.Equal(t, idempotency.Pass, d.Kind)
		assert.Nil(t, d.Lease)
		assert.NoError(t, d.Err)
	}
	assert.Zero(t, f.store.Len())
}

func TestBeginKeyAbsent(t *testing.T) {
	f := newFixture(t)
	d := f.begin(t, request("POST", "/v1/orders", orderJSON))
	assert.Equal(t, idempotency.Pass, d.Kind, "optional key: pass through")
	assert.Zero(t, f.store.Len())

	f.pol.KeyRequired = true
	d = f.begin(t, request("POST", "/v1/orders", orderJSON))
	requireReject(t, d, 400, "key-missing")
	assert.ErrorIs(t, d.Err, idempotency.ErrKeyMissing)
	assert.Zero(t, f.store.Len())
}

func TestBeginKeyMalformed(t *testing.T) {
	f := newFixture(t)
	for _, key := range []string{`"abc`, "a,b", strings.Repeat("x", 256), "", "\x01"} {
		d := f.begin(t, post(key, orderJSON))
		requireReject(t, d, 400, "key-malformed")
		assert.ErrorIs(t, d.Err, idempotency.ErrKeyMalformed)
	}
	assert.Zero(t, f.store.Len(), "nothing stored")
}

func TestBeginMultipleKeyFields(t *testing.T) {
	f := newFixture(t)
	r := post("k1", orderJSON, "Idempotency-Key", "k2")
	d := f.begin(t, r)
	requireReject(t, d, 400, "key-malformed")
	assert.Contains(t, d.Problem.Detail, "2 Idempotency-Key fields")
	assert.Zero(t, f.store.Len())
}

func TestBeginFirstProceeds(t *testing.T) {
	f := newFixture(t)
	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NotNil(t, d.Lease)
	assert.Len(t, d.KeyID, 12)
	assert.True(t, strings.HasPrefix(d.Lease.StorageKey(), d.KeyID))

	e, err := f.store.Get(context.Background(), d.Lease.StorageKey())
	require.NoError(t, err)
	assert.Equal(t, idempotency.InFlight, e.State)
	assert.Equal(t, f.clock.Now().Add(idempotency.DefaultLease), e.LeaseExpiresAt)
	assert.Equal(t, f.clock.Now().Add(idempotency.DefaultRetention), e.ExpiresAt, "a claim is kept for the retention")
	assert.Equal(t, idempotency.FingerprintOf(&f.pol, post("k1", orderJSON)), e.Fingerprint)
}

func TestBeginReplayAfterComplete(t *testing.T) {
	f := newFixture(t)
	lease := f.proceed(t, post("k1", orderJSON))
	created := f.clock.Now()
	resp := response(201, `{"id":"ord_1"}`, "Content-Type", "application/json", "Location", "/v1/orders/ord_1",
		"Set-Cookie", "s=1", "Content-Length", "14", "Connection", "close", "Date", "Fri")
	require.NoError(t, lease.Complete(context.Background(), resp))
	assert.NoError(t, lease.Complete(context.Background(), response(500, "")), "second settle is a no-op")
	assert.NoError(t, lease.Abandon(context.Background(), true), "deferred Abandon is a no-op")

	f.clock.Advance(time.Hour)
	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Nil(t, d.Lease)
	assert.Equal(t, 201, d.Record.Status)
	assert.Equal(t, `{"id":"ord_1"}`, string(d.Record.Body))
	assert.Equal(t, hdrs("Content-Type", "application/json", "Location", "/v1/orders/ord_1"), d.Record.Headers)
	assert.Equal(t, idempotency.MarkNone, d.Record.Mark)
	assert.True(t, created.Equal(d.Record.CreatedAt))
	assert.Equal(t, lease.StorageKey()[:12], d.KeyID)

	t.Run("retention ends the replay", func(t *testing.T) {
		e, err := f.store.Get(context.Background(), lease.StorageKey())
		require.NoError(t, err)
		assert.Equal(t, created.Add(idempotency.DefaultRetention), e.ExpiresAt)
		f.clock.Advance(idempotency.DefaultRetention - time.Hour)
		f.proceed(t, post("k1", orderJSON))
	})
}

func TestBeginInFlightConflict(t *testing.T) {
	f := newFixture(t)
	f.proceed(t, post("k1", orderJSON))

	f.clock.Advance(10*time.Second + 200*time.Millisecond)
	d := f.begin(t, post("k1", orderJSON))
	requireReject(t, d, 409, "request-in-progress")
	assert.ErrorIs(t, d.Err, idempotency.ErrInFlight)
	assert.Equal(t, time.Second, d.Problem.RetryAfter, "the policy's polling hint, not the 19.8s left on the lease")
	assert.Contains(t, d.Problem.Headers(), idempotency.Header{Name: "Retry-After", Value: "1"})

	f.pol.RetryAfter = 3 * time.Second
	d = f.begin(t, post("k1", orderJSON))
	assert.Contains(t, d.Problem.Headers(), idempotency.Header{Name: "Retry-After", Value: "3"})
}

func TestBeginWaitInFlightReplays(t *testing.T) {
	f := newFixture(t)
	f.pol.WaitInFlight = 5 * time.Second
	first := f.proceed(t, post("k1", orderJSON))
	start := f.clock.Now()

	// The first request finishes, on its own goroutine, during the
	// second's third poll.
	polls := 0
	f.clock.onSleep = func(time.Duration) {
		if polls++; polls == 3 {
			done := make(chan error)
			go func() { done <- first.Complete(context.Background(), response(201, "made")) }()
			require.NoError(t, <-done)
		}
	}
	d := f.begin(t, post("k1", orderJSON))
	require.Equal(t, idempotency.Replay, d.Kind, "decision: %+v", d)
	assert.Equal(t, "made", string(d.Record.Body))
	assert.Equal(t, []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}, f.clock.Sleeps())
	assert.Equal(t, 175*time.Millisecond, f.clock.Now().Sub(start))
}

func TestBeginWaitInFlightRunsAfterRelease(t *testing.T) {
	f := newFixture(t)
	f.pol.WaitInFlight = 5 * time.Second
	first := f.proceed(t, post("k1", orderJSON))
	f.clock.onSleep = func(time.Duration) {
		f.clock.onSleep = nil
		require.NoError(t, first.Complete(context.Background(), response(503, "busy")))
	}
	f.proceed(t, post("k1", orderJSON))
}

func TestBeginWaitInFlightGivesUp(t *testing.T) {
	f := newFixture(t)
	f.pol.WaitInFlight = 2 * time.Second
	f.proceed(t, post("k1", orderJSON))
	start := f.clock.Now()

	d := f.begin(t, post("k1", orderJSON))
	requireReject(t, d, 409, "request-in-progress")
	assert.Equal(t, 2*time.Second, f.clock.Now().Sub(start), "waits exactly WaitInFlight")
	assert.Equal(t, time.Second, d.Problem.RetryAfter)
	for _, s := range f.clock.Sleeps() {
		assert.LessOrEqual(t, s, 500*time.Millisecond, "poll interval is capped")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d = f.eng.Begin(ctx, &f.pol, post("k1", orderJSON))
	requireReject(t, d, 500, "internal")
	assert.ErrorIs(t, d.Err, context.Canceled)
}

func TestBeginFingerprintMismatch(t *testing.T) {
	f := newFixture(t)
	lease := f.proceed(t, post("k1", orderJSON))

	d := f.begin(t, post("k1", `{"amount":9999,"currency":"eur"}`))
	requireReject(t, d, 422, "key-reused")
	assert.ErrorIs(t, d.Err, idempotency.ErrMismatch)

	require.NoError(t, lease.Complete(context.Background(), response(201, "ok")))
	requireReject(t, f.begin(t, post("k1", `{}`)), 422, "key-reused")
	r := post("k1", orderJSON)
	r.Path = "/v1/refunds"
	requireReject(t, f.begin(t, r), 422, "key-reused")
	assert.Equal(t, idempotency.Replay, f.begin(t, post("k1", orderJSON)).Kind, "the original still replays")
}

func TestBeginScopesAreIndependent(t *testing.T) {
	f := newFixture(t)
	alice := f.proceed(t, post("k1", orderJSON, "Authorization", "Bearer alice"))
	require.NoError(t, alice.Complete(context.Background(), response(201, "alice's order")))

	bob := f.proceed(t, post("k1", orderJSON, "Authorization", "Bearer bob"))
	assert.NotEqual(t, alice.StorageKey(), bob.StorageKey())
	f.proceed(t, post("k1", orderJSON))

	d := f.begin(t, post("k1", orderJSON, "Authorization", "Bearer alice"))
	require.Equal(t, idempotency.Replay, d.Kind)
	assert.Equal(t, "alice's order", string(d.Record.Body))
}

func TestCompleteDoesNotStoreSomeStatuses(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504, 408, 429} {
		f := newFixture(t)
		rec := &recorder{}
		f.eng = idempotency.New(f.store, idempotency.WithClock(f.clock.Now, f.clock.Sleep), idempotency.WithHooks(rec.hooks()))
		lease := f.proceed(t, post("k1", orderJSON))
		require.NoError(t, lease.Complete(context.Background(), response(status, "boom")))
		assert.Zero(t, f.store.Len(), "status %d released", status)
		f.proceed(t, post("k1", orderJSON))
		_, _, settled, _ := rec.snapshot()
		assert.Equal(t, []string{"released/0"}, settled)
	}
	for _, status := range []int{200, 201, 400, 404, 409, 422} {
		f := newFixture(t)
		lease := f.proceed(t, post("k1", orderJSON))
		require.NoError(t, lease.Complete(context.Background(), response(status, "x")))
		d := f.begin(t, post("k1", orderJSON))
		require.Equal(t, idempotency.Replay, d.Kind, "status %d stored", status)
		assert.Equal(t, status, d.Record.Status)
	}
}

func TestCompleteTooLargeStoresTombstone(t *testing.T) {
	f := newFixture(t)
	f.pol.MaxResponseBody = 8
	atCap := f.proceed(t, post("fits", orderJSON))
	require.NoError(t, atCap.Complete(context.Background(), response(200, "12345678")))
	assert.Equal(t, idempotency.Replay, f.begin(t, post("fits", orderJSON)).Kind)

	over := f.proceed(t, post("big", orderJSON))
	require.NoError(t, over.Complete(context.Background(), response(200, "123456789", "Content-Type", "text/plain")))
	e, err := f.store.Get(context.Background(), over.StorageKey())
	require.NoError(t, err)
	assert.Equal(t, idempotency.MarkTooLarge, e.Record.Mark)
	assert.Equal(t, 200, e.Record.Status)
	assert.Empty(t, e.Record.Body)
	assert.Empty(t, e.Record.Headers)

	d := f.begin(t, post("big", orderJSON))
	requireReject(t, d, 413, "response-too-large")
	assert.ErrorIs(t, d.Err, idempotency.ErrRecordTooLarge)

	// A transport that stopped buffering says so with TooLarge.
	flagged := f.proceed(t, post("flagged", orderJSON))
	require.NoError(t, flagged.Complete(context.Background(), &idempotency.Record{Status: 200, Body: []byte("1"), Mark: idempotency.MarkTooLarge}))
	requireReject(t, f.begin(t, post("flagged", orderJSON)), 413, "response-too-large")
}

func TestBeginRequestTooLarge(t *testing.T) {
	f := newFixture(t)
	f.pol.MaxRequestBody = 10
	f.proceed(t, post("k1", "0123456789"))
	d := f.begin(t, post("k2", "0123456789A"))
	requireReject(t, d, 413, "request-too-large")
	assert.ErrorIs(t, d.Err, idempotency.ErrRequestTooLarge)
	assert.Equal(t, 1, f.store.Len(), "nothing stored for the large one")

	f.pol.Fingerprint = idempotency.FingerprintHeadersOnly
	f.proceed(t, post("k3", "0123456789A"))
}

func TestBeginStoreFailure(t *testing.T) {
	p := idempotency.DefaultPolicy()
	eng := idempotency.New(stubStore{})
	d := eng.Begin(context.Background(), &p, post("k1", orderJSON))
	requireReject(t, d, 503, "store-unavailable")
	assert.ErrorIs(t, d.Err, idempotency.ErrStoreUnavailable)
	assert.Contains(t, d.Problem.Headers(), idempotency.Header{Name: "Retry-After", Value: "1"})
	assert.NotContains(t, string(d.Problem.Body()), "10.1.2.3", "transport details never reach the client")
	assert.Len(t, d.KeyID, 12)

	p.FailOpen = true
	d = eng.Begin(context.Background(), &p, post("k1", orderJSON))
	assert.Equal(t, idempotency.Pass, d.Kind)
	assert.ErrorIs(t, d.Err, idempotency.ErrStoreUnavailable, "fail-open still says why")
	assert.Nil(t, d.Problem)
	assert.Nil(t, d.Lease)

	// A request whose own context ended is not let through by fail-open.
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	slow := idempotency.New(stubStore{acquire: func(ctx context.Context) (idempotency.AcquireResult, error) {
		return idempotency.AcquireResult{}, ctx.Err()
	}})
	d = slow.Begin(ctx, &p, post("k1", orderJSON))
	requireReject(t, d, 503, "store-unavailable")
	assert.ErrorIs(t, d.Err, context.DeadlineExceeded)
}

func TestBeginUnknownOutcome(t *testing.T) {
	p := idempotency.DefaultPolicy()
	eng := idempotency.New(stubStore{acquire: func(context.Context) (idempotency.AcquireResult, error) {
		return idempotency.AcquireResult{State: 42}, nil
	}})
	d := eng.Begin(context.Background(), &p, post("k1", orderJSON))
	requireReject(t, d, 500, "internal")
}

func TestBeginAutoKey(t *testing.T) {
	f := newFixture(t)
	f.pol.KeyRequired = true
	f.pol.AutoKey = &idempotency.AutoKey{JSONFields: []string{"amount"}}
	alice := []string{"Authorization", "Bearer alice"}
	lease := f.proceed(t, request("POST", "/v1/orders", orderJSON, alice...))
	require.NoError(t, lease.Complete(context.Background(), response(201, "auto")))

	d := f.begin(t, request("POST", "/v1/orders", `{"currency":"eur", "amount":1000}`, alice...))
	requireReject(t, d, 422, "key-reused") // same derived key, different body bytes

	// Another caller sending the same content never sees alice's answer.
	f.proceed(t, request("POST", "/v1/orders", orderJSON, "Authorization", "Bearer bob"))

	f.pol.CanonicalJSON = true
	f.proceed(t, request("POST", "/v1/orders", `{"amount":2000}`, alice...))

	explicit := f.proceed(t, post("sent", orderJSON))
	assert.NotEqual(t, lease.StorageKey(), explicit.StorageKey(), "a sent key wins over the derived one")
}

// An automatic key for a caller with no identity would be shared by every
// anonymous caller: such requests are not deduplicated at all, unless the
// policy scopes derived keys by client address.
func TestAutoKeyNeedsACaller(t *testing.T) {
	f := newFixture(t)
	f.pol.AutoKey = &idempotency.AutoKey{Body: true}
	anon := request("POST", "/v1/orders", orderJSON)
	assert.Equal(t, idempotency.Pass, f.begin(t, anon).Kind)
	assert.Equal(t, idempotency.Pass, f.begin(t, anon).Kind)
	assert.Zero(t, f.store.Len(), "nothing stored for anonymous content")

	f.pol.AutoKey.SourceAddress = true
	from := func(addr string) *idempotency.Request {
		r := request("POST", "/v1/orders", orderJSON)
		r.SourceAddress = addr
		return r
	}
	l := f.proceed(t, from("192.0.2.7:50123"))
	require.NoError(t, l.Complete(context.Background(), response(201, "x")))
	assert.Equal(t, idempotency.Replay, f.begin(t, from("192.0.2.7:61000")).Kind, "the port changes per connection; the address is the caller")
	f.proceed(t, from("198.51.100.9:50123"))
	f.proceed(t, from("[2001:db8::1]:443"))
}

func TestPrecheck(t *testing.T) {
	rec := &recorder{}
	f := newFixture(t, idempotency.WithHooks(rec.hooks()))
	check := func(r *idempotency.Request) (idempotency.Decision, bool) {
		r.Body = nil // Precheck runs before the body is read
		return f.eng.Precheck(&f.pol, r)
	}

	d, cont := check(request("GET", "/", "", "Idempotency-Key", `"bad`))
	assert.Equal(t, idempotency.Pass, d.Kind)
	assert.False(t, cont, "method not guarded")

	d, cont = check(request("POST", "/", ""))
	assert.Equal(t, idempotency.Pass, d.Kind)
	assert.False(t, cont, "no key, optional")

	d, cont = check(post(`"bad`, ""))
	assert.False(t, cont)
	requireReject(t, d, 400, "key-malformed")

	d, cont = check(post("a", "", "Idempotency-Key", "b"))
	assert.False(t, cont)
	requireReject(t, d, 400, "key-malformed")

	d, cont = check(post("good", ""))
	assert.True(t, cont)
	assert.Equal(t, idempotency.Pass, d.Kind)

	f.pol.KeyRequired = true
	d, cont = check(request("POST", "/", ""))
	assert.False(t, cont)
	requireReject(t, d, 400, "key-missing")

	f.pol.AutoKey = &idempotency.AutoKey{Body: true}
	_, cont = check(request("POST", "/", ""))
	assert.True(t, cont, "auto-keyed: go on and read the body")

	decided, ops, _, _ := rec.snapshot()
	assert.Equal(t, []string{"pass", "key-malformed", "key-malformed", "key-missing"}, decided,
		"one report per final answer; continue=true leaves the report to Begin")
	assert.Empty(t, ops, "Precheck never touches the store")
	assert.Zero(t, f.store.Len())

}

func TestKindString(t *testing.T) {
	for k, want := range map[idempotency.Kind]string{idempotency.Pass: "pass", idempotency.Proceed: "proceed",
		idempotency.Replay: "replay", idempotency.Reject: "reject", 0: "invalid", -1: "invalid", 9: "invalid"} {
		assert.Equal(t, want, k.String())
	}
	for o, want := range map[idempotency.State]string{idempotency.Acquired: "acquired", idempotency.Completed: "completed",
		idempotency.InFlight: "in_flight", idempotency.Mismatch: "mismatch", 0: "unknown"} {
		assert.Equal(t, want, o.String())
	}
	assert.Equal(t, "in_flight", idempotency.InFlight.String())
	assert.Equal(t, "completed", idempotency.Completed.String())
}
