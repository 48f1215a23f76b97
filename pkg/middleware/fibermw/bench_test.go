package fibermw_test

import (
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/valyala/fasthttp"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/fibermw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: a Fiber app with the middleware over the memory store
// against the same app without it, miss and replay, in one run. Requests
// go straight to the app's fasthttp handler, as the other front ends'
// benchmarks skip the network.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	mw, err := fibermw.New(store)
	if err != nil {
		b.Fatal(err)
	}
	app := func(mws ...any) fasthttp.RequestHandler {
		a := fiber.New()
		for _, m := range mws {
			a.Use(m)
		}
		a.Post("/orders", func(c fiber.Ctx) error {
			c.Set("Location", "/orders/42")
			c.Set("Content-Type", "application/json")
			return c.Status(http.StatusCreated).SendString(`{"id":42,"status":"created","amount":1250,"currency":"EUR"}`)
		})
		return a.Handler()
	}
	behaviortest.BenchOverheadFunc(b, serveFast(app()), serveFast(app(mw)))
}

func serveFast(h fasthttp.RequestHandler) behaviortest.BenchServe {
	body := []byte(`{"item":"book","quantity":1,"amount":1250,"currency":"EUR"}`)
	var ctx fasthttp.RequestCtx
	return func(key string) bool {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod(http.MethodPost)
		ctx.Request.SetRequestURI("/orders")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.Header.Set("Idempotency-Key", key)
		ctx.Request.SetBody(body)
		h(&ctx)
		return ctx.Response.StatusCode() == http.StatusCreated
	}
}
