package ginmw_test

import (
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/ginmw"
)

func init() { gin.SetMode(gin.ReleaseMode) }

// TestBehaviour runs the shared behaviour suite against the Gin middleware
// over the memory store and a real Redis.
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		routes := behaviortest.Routes()
		mw, err := ginmw.New(store, ginmw.WithPolicyFunc(func(c *gin.Context) *idempotency.Policy {
			return behaviortest.Lookup(routes, c.Request.URL.Path)
		}))
		if err != nil {
			t.Fatal(err)
		}
		up := behaviortest.NewUpstream()
		r := gin.New()
		r.Use(gin.Recovery(), mw)
		r.Any("/*path", gin.WrapH(up))
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		behaviortest.Run(t, behaviortest.Target{BaseURL: srv.URL, Upstream: up, StoreOutage: store.Outage})
	})
}
