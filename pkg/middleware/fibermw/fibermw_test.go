package fibermw_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/recover"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/fibermw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func newMW(t *testing.T, opts ...fibermw.Option) fiber.Handler {
	t.Helper()
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	mw, err := fibermw.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

type answer struct {
	status int
	header http.Header
	body   string
}

// post sends a POST through app.Test; hdr alternates names and values.
func post(t *testing.T, app *fiber.App, target string, hdr ...string) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"a":1}`))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := app.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func TestNewRejectsBadConfig(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.Lease = 0
	if _, err := fibermw.New(memstore.New(memstore.Options{}), fibermw.WithPolicy(&p)); err == nil {
		t.Error("invalid policy accepted")
	}
	if _, err := fibermw.New(nil); err == nil {
		t.Error("nil store accepted")
	}
}

// Fiber's writers are recorded from the buffered response; fields outer
// middleware set are not recorded, so a replay gets fresh ones; the default
// denylist keeps Set-Cookie out of replays; the handler reads the body.
func TestRecordsBufferedResponse(t *testing.T) {
	runs, reqID := 0, 0
	app := fiber.New()
	app.Use(func(c fiber.Ctx) error {
		reqID++
		c.Set("X-Request-Id", strings.Repeat("r", reqID))
		return c.Next()
	}, newMW(t))
	app.Post("/orders", func(c fiber.Ctx) error {
		runs++
		c.Set("Location", "/orders/1")
		c.Response().Header.Add("X-Multi", "a")
		c.Response().Header.Add("X-Multi", "b")
		c.Cookie(&fiber.Cookie{Name: "session", Value: "s1"})
		return c.Status(http.StatusCreated).JSON(fiber.Map{"run": runs, "body": string(c.Body())})
	})
	first := post(t, app, "/orders", "Idempotency-Key", "k1")
	again := post(t, app, "/orders", "Idempotency-Key", "k1")
	if runs != 1 {
		t.Fatalf("handler ran %d times, want 1", runs)
	}
	if first.status != 201 || first.body != `{"body":"{\"a\":1}","run":1}` || first.header.Get("Set-Cookie") == "" {
		t.Errorf("live: %+v", first)
	}
	if again.status != 201 || again.body != first.body || again.header.Get("Idempotent-Replayed") != "true" ||
		again.header.Get("Location") != "/orders/1" || strings.Join(again.header.Values("X-Multi"), ",") != "a,b" ||
		again.header.Get("Content-Type") != first.header.Get("Content-Type") {
		t.Errorf("replay %+v, first %+v", again, first)
	}
	if again.header.Get("Set-Cookie") != "" {
		t.Errorf("replay carries Set-Cookie %q", again.header.Get("Set-Cookie"))
	}
	if again.header.Get("X-Request-Id") != "rr" {
		t.Errorf("replay X-Request-Id %q, want the outer middleware's fresh value", again.header.Get("X-Request-Id"))
	}
}

// A handler error is rendered by the app's ErrorHandler inside the
// middleware, so that answer is recorded: 4xx replayed, 5xx not stored.
func TestHandlerErrors(t *testing.T) {
	runs := map[string]int{}
	var seen []error
	app := fiber.New()
	app.Use(func(c fiber.Ctx) error { err := c.Next(); seen = append(seen, err); return err }, newMW(t))
	app.Post("/missing", func(c fiber.Ctx) error {
		runs["missing"]++
		return fiber.NewError(http.StatusNotFound, "no such order")
	})
	app.Post("/broken", func(c fiber.Ctx) error { runs["broken"]++; return errors.New("database down") })

	first := post(t, app, "/missing", "Idempotency-Key", "k1")
	again := post(t, app, "/missing", "Idempotency-Key", "k1")
	if first.status != 404 || first.body != "no such order" || again.status != 404 || again.body != first.body ||
		again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("404: first %+v, again %+v", first, again)
	}
	for range 2 {
		if a := post(t, app, "/broken", "Idempotency-Key", "k2"); a.status != 500 {
			t.Errorf("error answer %d, want 500", a.status)
		}
	}
	if runs["missing"] != 1 || runs["broken"] != 2 {
		t.Errorf("runs %v, want missing 1 (replayed), broken 2 (500 not stored)", runs)
	}
	for _, err := range seen {
		if err != nil {
			t.Errorf("outer middleware saw %v; the error is rendered in place, as Fiber's logger does", err)
		}
	}
}

// A streamed body is produced after the handler returns, so it cannot be
// recorded: the outcome is unknown, never re-run.
func TestStreamedBodyLeavesKeyLocked(t *testing.T) {
	runs := 0
	app := fiber.New()
	app.Use(newMW(t))
	app.Post("/export", func(c fiber.Ctx) error {
		runs++
		return c.SendStreamWriter(func(w *bufio.Writer) { _, _ = w.WriteString("streamed") })
	})
	if a := post(t, app, "/export", "Idempotency-Key", "k"); a.status != 200 || a.body != "streamed" {
		t.Errorf("live %+v", a)
	}
	if a := post(t, app, "/export", "Idempotency-Key", "k"); a.status != http.StatusFailedDependency || !strings.Contains(a.body, "outcome-unknown") {
		t.Errorf("retry %+v, want a refusal (the outcome is unknown), not a re-run", a)
	}
	if runs != 1 {
		t.Errorf("handler ran %d times, want 1", runs)
	}
}

// Behind the recover middleware a panic becomes a 500 and the key is
// released, so the retry runs.
func TestRecoverReleases(t *testing.T) {
	runs := 0
	app := fiber.New()
	app.Use(recover.New(), newMW(t))
	app.Post("/pay", func(c fiber.Ctx) error {
		runs++
		if runs == 1 {
			panic("boom")
		}
		return c.Status(http.StatusCreated).SendString("ok")
	})
	if a := post(t, app, "/pay", "Idempotency-Key", "k"); a.status != 500 {
		t.Errorf("panic answered %d, want 500", a.status)
	}
	if a := post(t, app, "/pay", "Idempotency-Key", "k"); a.status != 201 || a.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("retry %+v, want a fresh 201", a)
	}
}

func TestOptions(t *testing.T) {
	required := idempotency.DefaultPolicy()
	required.KeyRequired = true
	var gotErr error
	mw := newMW(t,
		fibermw.WithPolicyFunc(func(c fiber.Ctx) *idempotency.Policy {
			if strings.HasPrefix(c.Path(), "/orders/") {
				return &required
			}
			return nil
		}),
		fibermw.WithKeyFunc(func(c fiber.Ctx) (string, bool) { k := c.Query("op"); return k, k != "" }),
		fibermw.WithScopeFunc(func(c fiber.Ctx) string { u, _ := c.Locals("user").(string); return u }),
		fibermw.WithErrorHandler(func(c fiber.Ctx, p *idempotency.Problem, err error) error {
			gotErr = err
			return fiber.NewError(p.Status, p.Title) // rendered by the app's ErrorHandler
		}),
	)
	runs := 0
	app := fiber.New()
	app.Use(func(c fiber.Ctx) error { c.Locals("user", c.Get("X-User")); return c.Next() }, mw)
	app.Post("/orders/:id", func(c fiber.Ctx) error {
		runs++
		u, _ := c.Locals("user").(string)
		return c.Status(http.StatusCreated).SendString(u + " run " + string(rune('0'+runs)))
	})
	if a := post(t, app, "/orders/1", "X-User", "alice"); a.status != 400 || !errors.Is(gotErr, idempotency.ErrKeyMissing) || !strings.Contains(a.body, "required") {
		t.Errorf("no key: %+v (err %v), want the app's rendering of the 400", a, gotErr)
	}
	alice := post(t, app, "/orders/1?op=x", "X-User", "alice")
	bob := post(t, app, "/orders/1?op=x", "X-User", "bob")
	again := post(t, app, "/orders/1?op=x", "X-User", "alice")
	if alice.body != "alice run 1" || bob.body != "bob run 2" || again.body != "alice run 1" || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("alice %q, bob %q, alice again %q", alice.body, bob.body, again.body)
	}
	if a := post(t, app, "/free", "Idempotency-Key", "k"); a.status != 404 {
		t.Errorf("unguarded route: %d", a.status)
	}
}
