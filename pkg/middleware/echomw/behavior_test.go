package echomw_test

import (
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/echomw"
)

// TestBehaviour runs the shared behaviour suite against the Echo middleware
// over the memory store and a real Redis.
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		routes := behaviortest.Routes()
		mw, err := echomw.New(store, echomw.WithPolicyFunc(func(c echo.Context) *idempotency.Policy {
			return behaviortest.Lookup(routes, c.Request().URL.Path)
		}))
		if err != nil {
			t.Fatal(err)
		}
		up := behaviortest.NewUpstream()
		e := echo.New()
		e.Use(mw)
		e.Any("/*", echo.WrapHandler(up))
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		behaviortest.Run(t, behaviortest.Target{BaseURL: srv.URL, Upstream: up, StoreOutage: store.Outage})
	})
}
