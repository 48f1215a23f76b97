package ginmw_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/ginmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func newMW(t *testing.T, opts ...ginmw.Option) gin.HandlerFunc {
	t.Helper()
	s := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	mw, err := ginmw.New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return mw
}

func TestNewRejectsBadConfig(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.Methods = nil
	if _, err := ginmw.New(memstore.New(memstore.Options{}), ginmw.WithPolicy(&p)); err == nil {
		t.Error("invalid policy accepted")
	}
}

// Gin's own writers (c.JSON, c.String, c.Status) are recorded, a replay
// aborts the chain, and the middleware can guard one group only.
func TestGinWriters(t *testing.T) {
	runs, after := 0, 0
	r := gin.New()
	pay := r.Group("/pay", newMW(t), func(c *gin.Context) { c.Next(); after++ })
	pay.POST("/json", func(c *gin.Context) {
		runs++
		c.Header("X-Run", "yes")
		c.JSON(http.StatusCreated, gin.H{"run": runs})
	})
	pay.POST("/status", func(c *gin.Context) {
		runs++
		c.Status(http.StatusAccepted) // Gin sends this head only after the chain
	})
	r.POST("/free", func(c *gin.Context) { runs++; c.String(http.StatusOK, "free") })

	first := behaviortest.Post(r, "/pay/json", "Idempotency-Key", "k1")
	again := behaviortest.Post(r, "/pay/json", "Idempotency-Key", "k1")
	if again.Code != 201 || again.Body.String() != first.Body.String() || again.Header().Get("X-Run") != "yes" ||
		again.Header().Get("Content-Type") != "application/json; charset=utf-8" || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay %d %q %v; first %q", again.Code, again.Body, again.Header(), first.Body)
	}
	st := behaviortest.Post(r, "/pay/status", "Idempotency-Key", "k2")
	stAgain := behaviortest.Post(r, "/pay/status", "Idempotency-Key", "k2")
	if st.Code != http.StatusAccepted || stAgain.Code != http.StatusAccepted || stAgain.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("c.Status: live %d, replay %d %v", st.Code, stAgain.Code, stAgain.Header())
	}
	behaviortest.Post(r, "/free", "Idempotency-Key", "k3")
	behaviortest.Post(r, "/free", "Idempotency-Key", "k3")
	if runs != 4 {
		t.Errorf("handlers ran %d times, want 4 (one per guarded key, two unguarded)", runs)
	}
	if after != 2 {
		t.Errorf("group middleware after the idempotency one ran %d times, want 2 (replays abort the chain)", after)
	}
}

// Behind gin.Recovery a panic becomes a 500 for the client and the key is
// released, so the retry runs.
func TestRecoveryReleases(t *testing.T) {
	runs := 0
	r := gin.New()
	r.Use(gin.RecoveryWithWriter(nilWriter{}), newMW(t))
	r.POST("/pay", func(c *gin.Context) {
		runs++
		if runs == 1 {
			panic("boom")
		}
		c.String(http.StatusCreated, "ok")
	})
	if rec := behaviortest.Post(r, "/pay", "Idempotency-Key", "k"); rec.Code != http.StatusInternalServerError {
		t.Errorf("panic answered %d, want 500", rec.Code)
	}
	if rec := behaviortest.Post(r, "/pay", "Idempotency-Key", "k"); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("retry %d %v, want a fresh 201", rec.Code, rec.Header())
	}
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestOptions(t *testing.T) {
	required := idempotency.DefaultPolicy()
	required.KeyRequired = true
	var gotErr error
	mw := newMW(t,
		ginmw.WithPolicyFunc(func(c *gin.Context) *idempotency.Policy {
			if c.FullPath() == "/orders/:id" {
				return &required
			}
			return nil
		}),
		ginmw.WithKeyFunc(func(c *gin.Context) (string, bool) { return c.GetQuery("op") }),
		ginmw.WithScopeFunc(func(c *gin.Context) string { return c.GetString("user") }),
		ginmw.WithErrorHandler(func(c *gin.Context, p *idempotency.Problem, err error) {
			gotErr = err
			c.JSON(p.Status, gin.H{"error": p.Title})
		}),
	)
	runs := 0
	r := gin.New()
	r.Use(func(c *gin.Context) { c.Set("user", c.GetHeader("X-User")) }, mw)
	r.POST("/orders/:id", func(c *gin.Context) { runs++; c.String(http.StatusCreated, "%s run %d", c.GetString("user"), runs) })

	if rec := behaviortest.Post(r, "/orders/1", "X-User", "alice"); rec.Code != http.StatusBadRequest || !errors.Is(gotErr, idempotency.ErrKeyMissing) ||
		!strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("no key: %d %q (err %v), want the custom 400", rec.Code, rec.Body, gotErr)
	}
	alice := behaviortest.Post(r, "/orders/1?op=x", "X-User", "alice")
	bob := behaviortest.Post(r, "/orders/1?op=x", "X-User", "bob")
	again := behaviortest.Post(r, "/orders/1?op=x", "X-User", "alice")
	if alice.Body.String() != "alice run 1" || bob.Body.String() != "bob run 2" || again.Body.String() != "alice run 1" ||
		again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("alice %q, bob %q, alice again %q", alice.Body, bob.Body, again.Body)
	}
}
