package idempotency_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// claimedKeys is a memstore that remembers the keys Begin claimed.
type claimedKeys struct {
	*memstore.Store
	mu   sync.Mutex
	keys []string
}

func (s *claimedKeys) Acquire(ctx context.Context, c idempotency.Claim, o idempotency.AcquireOptions) (idempotency.AcquireResult, error) {
	s.mu.Lock()
	s.keys = append(s.keys, c.Key)
	s.mu.Unlock()
	return s.Store.Acquire(ctx, c, o)
}

func (s *claimedKeys) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys
	s.keys = nil
	return k
}

// TestRequestKeyIsTheKeyBeginClaims: for every way a key is sent or
// derived and every scope input, RequestKey names the key Begin claims,
// and "" exactly when Begin claims none.
func TestRequestKeyIsTheKeyBeginClaims(t *testing.T) {
	auto := idempotency.DefaultPolicy()
	auto.AutoKey = &idempotency.AutoKey{Headers: []string{"X-Client-Ref"}, JSONFields: []string{"order.id"}}
	autoAddr := auto
	autoAddr.ScopeHeaders = nil
	autoAddr.AutoKey = &idempotency.AutoKey{Body: true, SourceAddress: true}
	principal := idempotency.DefaultPolicy()
	principal.ScopeHeaders, principal.ScopePrincipal = []string{"X-Tenant", "Authorization"}, true
	custom := idempotency.DefaultPolicy()
	custom.KeyHeader = "X-Request-Key"

	withPrincipal := func(r *idempotency.Request, p string) *idempotency.Request { r.Principal = p; return r }
	withAddr := func(r *idempotency.Request, a string) *idempotency.Request { r.SourceAddress = a; return r }
	def := idempotency.DefaultPolicy()
	cases := []struct {
		name    string
		p       *idempotency.Policy
		r       *idempotency.Request
		derived bool
		none    bool // Begin claims nothing
	}{
		{name: "token key, Authorization scope", p: &def, r: post("k1", "{}", "Authorization", "Bearer a")},
		{name: "sf-string key", p: &def, r: post(`"k1"`, "{}", "Authorization", "Bearer a")},
		{name: "anonymous", p: &def, r: post("k1", "{}")},
		{name: "custom key header", p: &custom, r: request("POST", "/x", "", "X-Request-Key", "k1")},
		{name: "principal and two scope headers, repeated values", p: &principal,
			r: withPrincipal(post("k1", "", "X-Tenant", "t1", "X-Tenant", "t2", "Authorization", "Bearer a"), "spiffe://c/ns/a/sa/b")},
		{name: "principal only", p: &principal, r: withPrincipal(post("k1", ""), "spiffe://c/ns/a/sa/b")},
		{name: "derived from header and JSON field", p: &auto, derived: true,
			r: request("POST", "/orders?x=1", `{"order":{"id":7}}`, "X-Client-Ref", "r1", "Authorization", "Bearer a")},
		{name: "derived, scoped by source address without port", p: &autoAddr, derived: true,
			r: withAddr(request("POST", "/orders", "body"), "203.0.113.7:5123")},
		{name: "derived, anonymous: not deduplicated", p: &auto, derived: true, none: true,
			r: request("POST", "/orders", `{"order":{"id":7}}`, "X-Client-Ref", "r1")},
		{name: "no key, no auto_key", p: &def, none: true, r: request("POST", "/orders", "{}", "Authorization", "Bearer a")},
	}
	s := &claimedKeys{Store: memstore.New(memstore.Options{})}
	t.Cleanup(func() { _ = s.Close() })
	eng := idempotency.New(s)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := eng.Begin(context.Background(), tc.p, tc.r)
			if d.Lease != nil {
				require.NoError(t, d.Lease.Complete(context.Background(), response(201, "ok")))
			}
			claimed := s.take()
			key, derived, err := idempotency.RequestKey(tc.p, tc.r)
			require.NoError(t, err)
			assert.Equal(t, tc.derived, derived)
			if tc.none {
				assert.Empty(t, claimed, "Begin claims nothing")
				assert.Empty(t, key)
				return
			}
			require.Len(t, claimed, 1, "decision %+v", d)
			assert.Equal(t, claimed[0], key)
		})
	}
	// Scope and key inputs all count: changing any one moves the key.
	base, _, _ := idempotency.RequestKey(&principal, withPrincipal(post("k1", "", "X-Tenant", "t1"), "p1"))
	for _, r := range []*idempotency.Request{
		withPrincipal(post("k2", "", "X-Tenant", "t1"), "p1"),
		withPrincipal(post("k1", "", "X-Tenant", "t2"), "p1"),
		withPrincipal(post("k1", "", "X-Tenant", "t1"), "p2"),
		withPrincipal(post("k1", "", "X-Tenant", "t1", "Authorization", "x"), "p1"),
	} {
		k, _, err := idempotency.RequestKey(&principal, r)
		require.NoError(t, err)
		assert.NotEqual(t, base, k)
	}
}

func TestRequestKeyRejectsMalformedKeysAsBeginDoes(t *testing.T) {
	p := idempotency.DefaultPolicy()
	for _, r := range []*idempotency.Request{
		post(`"unterminated`, ""),
		request("POST", "/x", "", "Idempotency-Key", "a", "Idempotency-Key", "b"),
	} {
		_, _, err := idempotency.RequestKey(&p, r)
		require.ErrorIs(t, err, idempotency.ErrKeyMalformed)
		d := idempotency.New(memstore.New(memstore.Options{})).Begin(context.Background(), &p, r)
		require.Equal(t, "key-malformed", d.Problem.Slug())
	}
}

// TestRetryDecisionPredictsBegin: for a key in each state the entry Get
// reports predicts what Begin then answers a retry.
func TestRetryDecisionPredictsBegin(t *testing.T) {
	retryAfterLease := idempotency.DefaultPolicy()
	retryAfterLease.UnknownOutcome = idempotency.UnknownRetryAfterLease
	settle := map[string]func(*idempotency.Lease) error{
		"replayable": func(l *idempotency.Lease) error { return l.Complete(context.Background(), response(201, "made")) },
		"too large": func(l *idempotency.Lease) error {
			return l.Complete(context.Background(), &idempotency.Record{Status: 200, Mark: idempotency.MarkTooLarge})
		},
		"incomplete": func(l *idempotency.Lease) error {
			return l.Complete(context.Background(), &idempotency.Record{Status: 202, Mark: idempotency.MarkIncomplete})
		},
		"unknown":   func(l *idempotency.Lease) error { return l.Abandon(context.Background(), true) },
		"in flight": func(*idempotency.Lease) error { return nil },
		"lease expired": func(*idempotency.Lease) error {
			return nil // the clock moves past the lease below
		},
	}
	for name, fn := range settle {
		for _, pol := range []idempotency.Policy{idempotency.DefaultPolicy(), retryAfterLease} {
			t.Run(name+"/"+string(pol.UnknownOutcome), func(t *testing.T) {
				f := newFixture(t)
				f.pol = pol
				r := post("k-"+strings.ReplaceAll(name, " ", "-"), "{}")
				require.NoError(t, fn(f.proceed(t, r)))
				if name == "lease expired" {
					f.clock.Advance(pol.Lease + time.Second)
				}
				key, _, err := idempotency.RequestKey(&f.pol, r)
				require.NoError(t, err)
				ent, err := f.store.Get(context.Background(), key)
				require.NoError(t, err)
				want := idempotency.RetryDecision(&f.pol, ent)
				got := f.begin(t, r)
				require.Equal(t, got.Kind, want.Kind, "predicted %+v, Begin said %+v", want, got)
				if got.Kind == idempotency.Reject {
					require.Equal(t, got.Problem, want.Problem)
				}
				if got.Kind == idempotency.Replay {
					require.Equal(t, got.Record, want.Record)
				}
				if got.Lease != nil {
					require.NoError(t, got.Lease.Abandon(context.Background(), false))
				}
			})
		}
	}
	p := idempotency.DefaultPolicy()
	require.Equal(t, idempotency.Proceed, idempotency.RetryDecision(&p, nil).Kind, "an absent key runs")
	require.Equal(t, http.StatusInternalServerError, idempotency.RetryDecision(&p, &idempotency.Entry{State: idempotency.Completed}).Problem.Status)
}
