package stdhttp_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
)

// TestBehaviour runs the shared behaviour suite against the net/http
// middleware over the memory store and a real Redis, twice over one store
// (keys must not collide between runs).
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		routes := behaviortest.Routes()
		mw, err := stdhttp.New(store, stdhttp.WithPolicyFunc(func(r *http.Request) *idempotency.Policy {
			return behaviortest.Lookup(routes, r.URL.Path)
		}))
		if err != nil {
			t.Fatal(err)
		}
		up := behaviortest.NewUpstream()
		srv := httptest.NewServer(mw(up))
		t.Cleanup(srv.Close)
		target := behaviortest.Target{BaseURL: srv.URL, Upstream: up, StoreOutage: store.Outage}
		behaviortest.Run(t, target)
		t.Run("SecondRun", func(t *testing.T) { behaviortest.Run(t, target) })
	})
}
