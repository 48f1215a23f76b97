package ginmw_test

import (
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/ginmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: a Gin engine with the middleware over the memory
// store against the same engine without it, miss and replay, in one run.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	mw, err := ginmw.New(store)
	if err != nil {
		b.Fatal(err)
	}
	engine := func(mws ...gin.HandlerFunc) *gin.Engine {
		r := gin.New()
		r.Use(mws...)
		r.POST("/orders", gin.WrapH(behaviortest.BenchHandler))
		return r
	}
	behaviortest.BenchOverhead(b, engine(), engine(mw))
}
