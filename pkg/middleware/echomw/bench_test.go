package echomw_test

import (
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/echomw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: an Echo instance with the middleware over the memory
// store against the same instance without it, miss and replay, in one run.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	mw, err := echomw.New(store)
	if err != nil {
		b.Fatal(err)
	}
	instance := func(mws ...echo.MiddlewareFunc) *echo.Echo {
		e := echo.New()
		e.Use(mws...)
		e.POST("/orders", echo.WrapHandler(behaviortest.BenchHandler))
		return e
	}
	behaviortest.BenchOverhead(b, instance(), instance(mw))
}
