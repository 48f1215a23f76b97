package idempotency_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// fakeClock is a goroutine-safe manual clock. Sleep advances it at once and
// then runs onSleep, which lets a test act "while" the engine waits.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(d time.Duration)
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	hook := c.onSleep
	c.mu.Unlock()
	if hook != nil {
		hook(d)
	}
	return nil
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// fixture is an engine over a memstore, both on one fake clock.
type fixture struct {
	clock *fakeClock
	store *memstore.Store
	eng   *idempotency.Engine
	pol   idempotency.Policy
}

func newFixture(t *testing.T, opts ...idempotency.Option) *fixture {
	t.Helper()
	c := newFakeClock()
	s := memstore.New(memstore.Options{Now: c.Now})
	t.Cleanup(func() { _ = s.Close() })
	opts = append([]idempotency.Option{idempotency.WithClock(c.Now, c.Sleep)}, opts...)
	return &fixture{clock: c, store: s, eng: idempotency.New(s, opts...), pol: idempotency.DefaultPolicy()}
}

func (f *fixture) begin(t *testing.T, r *idempotency.Request) idempotency.Decision {
	t.Helper()
	return f.eng.Begin(context.Background(), &f.pol, r)
}

// proceed begins r and requires a Proceed decision.
func (f *fixture) proceed(t *testing.T, r *idempotency.Request) *idempotency.Lease {
	t.Helper()
	d := f.begin(t, r)
	require.Equal(t, idempotency.Proceed, d.Kind, "decision: %+v", d)
	require.NotNil(t, d.Lease)
	return d.Lease
}

// request builds a request; hdr alternates names and values.
func request(method, path, body string, hdr ...string) *idempotency.Request {
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	return &idempotency.Request{Method: method, Path: path, Header: h, Body: b}
}

// post is a keyed JSON POST, the common case.
func post(key, body string, hdr ...string) *idempotency.Request {
	return request(http.MethodPost, "/v1/orders", body, append([]string{"Idempotency-Key", key}, hdr...)...)
}

func response(status int, body string, hdr ...string) *idempotency.Record {
	r := &idempotency.Record{Status: status, Body: []byte(body)}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Headers = append(r.Headers, idempotency.Header{Name: hdr[i], Value: hdr[i+1]})
	}
	return r
}

func requireReject(t *testing.T, d idempotency.Decision, status int, slug string) {
	t.Helper()
	require.Equal(t, idempotency.Reject, d.Kind, "decision: %+v", d)
	require.NotNil(t, d.Problem)
	require.Equal(t, status, d.Problem.Status)
	require.Equal(t, idempotency.ProblemTypeBase+slug, d.Problem.Type)
	require.Error(t, d.Err)
	require.Nil(t, d.Lease)
}

// stubStore is a Store whose Acquire is scripted and whose other methods
// fail as an unreachable backend would.
type stubStore struct {
	acquire func(ctx context.Context) (idempotency.AcquireResult, error)
}

var errDown = fmt.Errorf("stub: dial tcp 10.1.2.3:6379: connection refused: %w", idempotency.ErrStoreUnavailable)

func (s stubStore) Acquire(ctx context.Context, _ idempotency.Claim, _ idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	if s.acquire != nil {
		return s.acquire(ctx)
	}
	return idempotency.AcquireResult{}, errDown
}

func (stubStore) Complete(context.Context, idempotency.Claim, *idempotency.Record) error {
	return errDown
}
func (stubStore) Release(context.Context, idempotency.Claim) error         { return errDown }
func (stubStore) Extend(context.Context, idempotency.Claim) error          { return errDown }
func (stubStore) Get(context.Context, string) (*idempotency.Entry, error)  { return nil, errDown }
func (stubStore) Delete(context.Context, string, *idempotency.Entry) error { return errDown }

// recorder collects hook calls.
type recorder struct {
	mu       sync.Mutex
	decided  []string
	ops      []string
	opErrs   []error
	renewals []error
	settled  []string
}

func (r *recorder) hooks() idempotency.Hooks {
	return idempotency.Hooks{
		Decided: func(o string) { r.mu.Lock(); r.decided = append(r.decided, o); r.mu.Unlock() },
		StoreCall: func(op string, _ time.Duration, err error) {
			r.mu.Lock()
			r.ops, r.opErrs = append(r.ops, op), append(r.opErrs, err)
			r.mu.Unlock()
		},
		LeaseRenewed: func(err error) { r.mu.Lock(); r.renewals = append(r.renewals, err); r.mu.Unlock() },
		Settled: func(how string, n int) {
			r.mu.Lock()
			r.settled = append(r.settled, fmt.Sprintf("%s/%d", how, n))
			r.mu.Unlock()
		},
	}
}

func (r *recorder) snapshot() (decided, ops, settled []string, renewals int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.decided...), append([]string(nil), r.ops...),
		append([]string(nil), r.settled...), len(r.renewals)
}
