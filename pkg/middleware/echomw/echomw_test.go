package echomw_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/echomw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func newMW(t *testing.T, opts ...echomw.Option) echo.MiddlewareFunc {
	t.Helper()
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	mw, err := echomw.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func TestNewRejectsBadConfig(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.Fingerprint = "everything"
	if _, err := echomw.New(memstore.New(memstore.Options{}), echomw.WithPolicy(&p)); err == nil {
		t.Error("invalid policy accepted")
	}
}

// An error a handler returns is rendered by Echo's error handler inside the
// middleware, so that answer is what gets recorded: 4xx replayed, 5xx not
// stored.
func TestHandlerErrors(t *testing.T) {
	runs := map[string]int{}
	e := echo.New()
	mw := newMW(t)
	e.POST("/missing", func(c echo.Context) error {
		runs["missing"]++
		return echo.NewHTTPError(http.StatusNotFound, "no such order")
	}, mw)
	e.POST("/broken", func(c echo.Context) error { runs["broken"]++; return errors.New("database down") }, mw)
	e.POST("/empty", func(c echo.Context) error { runs["empty"]++; return c.NoContent(http.StatusNoContent) }, mw)
	e.POST("/free", func(c echo.Context) error { runs["free"]++; return c.String(http.StatusOK, "free") })

	first := behaviortest.Post(e, "/missing", "Idempotency-Key", "k1")
	again := behaviortest.Post(e, "/missing", "Idempotency-Key", "k1")
	if first.Code != 404 || again.Code != 404 || again.Body.String() != first.Body.String() || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("404: first %d %q, again %d %q %v", first.Code, first.Body, again.Code, again.Body, again.Header())
	}
	for range 2 {
		if rec := behaviortest.Post(e, "/broken", "Idempotency-Key", "k2"); rec.Code != 500 {
			t.Errorf("error answer %d, want 500", rec.Code)
		}
	}
	behaviortest.Post(e, "/empty", "Idempotency-Key", "k3")
	if rec := behaviortest.Post(e, "/empty", "Idempotency-Key", "k3"); rec.Code != 204 || rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("204 replay: %d %v", rec.Code, rec.Header())
	}
	behaviortest.Post(e, "/free", "Idempotency-Key", "k4")
	behaviortest.Post(e, "/free", "Idempotency-Key", "k4")
	want := map[string]int{"missing": 1, "broken": 2, "empty": 1, "free": 2}
	for k, n := range want {
		if runs[k] != n {
			t.Errorf("%s ran %d times, want %d", k, runs[k], n)
		}
	}
}

func TestOptions(t *testing.T) {
	required := idempotency.DefaultPolicy()
	required.KeyRequired = true
	var gotErr error
	mw := newMW(t,
		echomw.WithPolicyFunc(func(c echo.Context) *idempotency.Policy {
			if c.Path() == "/orders/:id" {
				return &required
			}
			return nil
		}),
		echomw.WithKeyFunc(func(c echo.Context) (string, bool) {
			k := c.QueryParam("op")
			return k, k != ""
		}),
		echomw.WithScopeFunc(func(c echo.Context) string { u, _ := c.Get("user").(string); return u }),
		echomw.WithErrorHandler(func(c echo.Context, p *idempotency.Problem, err error) error {
			gotErr = err
			return echo.NewHTTPError(p.Status, p.Title)
		}),
	)
	runs := 0
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { c.Set("user", c.Request().Header.Get("X-User")); return next(c) }
	}, mw)
	e.POST("/orders/:id", func(c echo.Context) error {
		runs++
		u, _ := c.Get("user").(string)
		return c.String(http.StatusCreated, u+" run "+string(rune('0'+runs)))
	})

	if rec := behaviortest.Post(e, "/orders/1", "X-User", "alice"); rec.Code != http.StatusBadRequest || !errors.Is(gotErr, idempotency.ErrKeyMissing) ||
		!strings.Contains(rec.Body.String(), "required") {
		t.Errorf("no key: %d %q (err %v), want Echo's rendering of the 400", rec.Code, rec.Body, gotErr)
	}
	alice := behaviortest.Post(e, "/orders/1?op=x", "X-User", "alice")
	bob := behaviortest.Post(e, "/orders/1?op=x", "X-User", "bob")
	again := behaviortest.Post(e, "/orders/1?op=x", "X-User", "alice")
	if alice.Body.String() != "alice run 1" || bob.Body.String() != "bob run 2" || again.Body.String() != "alice run 1" ||
		again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("alice %q, bob %q, alice again %q", alice.Body, bob.Body, again.Body)
	}
}

// An outer middleware (a logger, error metrics) sees the error the handler
// returned, live and not on replay, and Echo renders it once.
func TestHandlerErrorReachesOuterMiddleware(t *testing.T) {
	errNotFound := echo.NewHTTPError(http.StatusNotFound, "no such order")
	var seen []error
	e := echo.New()
	e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			seen = append(seen, err)
			return err
		}
	}, newMW(t))
	e.POST("/orders", func(c echo.Context) error { return errNotFound })

	first := behaviortest.Post(e, "/orders", "Idempotency-Key", "k")
	again := behaviortest.Post(e, "/orders", "Idempotency-Key", "k")
	if len(seen) != 2 || seen[0] != errNotFound || seen[1] != nil {
		t.Errorf("outer middleware saw %v, want [the handler's error, nil for the replay]", seen)
	}
	want := `{"message":"no such order"}` + "\n"
	if first.Code != http.StatusNotFound || first.Body.String() != want {
		t.Errorf("live answer %d %q, want 404 %q rendered once", first.Code, first.Body, want)
	}
	if again.Code != http.StatusNotFound || again.Body.String() != want || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay %d %q %v", again.Code, again.Body, again.Header())
	}
}
