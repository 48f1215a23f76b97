package echomw_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/echomw"
)

func TestCapture(t *testing.T) {
	behaviortest.RunCapture(t, func(t testing.TB, store idempotency.Store, p idempotency.Policy, h http.Handler) http.Handler {
		mw, err := echomw.New(store, echomw.WithPolicy(&p))
		if err != nil {
			t.Fatal(err)
		}
		e := echo.New()
		e.Use(mw)
		e.Any("/*", echo.WrapHandler(h))
		return e
	})
}
