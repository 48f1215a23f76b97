package ginmw_test

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/ginmw"
)

func TestCapture(t *testing.T) {
	behaviortest.RunCapture(t, func(t testing.TB, store idempotency.Store, p idempotency.Policy, h http.Handler) http.Handler {
		mw, err := ginmw.New(store, ginmw.WithPolicy(&p))
		if err != nil {
			t.Fatal(err)
		}
		r := gin.New()
		r.Use(mw)
		r.Any("/*path", gin.WrapH(h))
		return r
	})
}
