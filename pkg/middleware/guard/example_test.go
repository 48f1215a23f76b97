package guard_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// Ctx and HandlerFunc stand for a framework of one's own: handlers take a
// context value and return an error.
type Ctx struct {
	W    http.ResponseWriter
	R    *http.Request
	User string // set by the framework's authentication
}

type HandlerFunc func(c *Ctx) error

// Idempotent is the whole adapter: the guard does the rest.
func Idempotent(store idempotency.Store, next HandlerFunc) (HandlerFunc, error) {
	g, err := guard.New(store, guard.Config[*Ctx]{
		Scope: func(c *Ctx) string { return c.User }, // callers never share records
	})
	if err != nil {
		return nil, err
	}
	return func(c *Ctx) error {
		var herr error
		g.Serve(c, guard.HTTPRequest(c.R), guard.HTTPResponder{ResponseWriter: c.W},
			func() { herr = next(c) }, // not guarded: run as is
			func(rec *guard.Recorder) { // guarded: record what the handler sends
				orig := c.W
				w := guard.NewWriter(orig, rec)
				c.W = w
				defer func() { c.W = orig }()
				if herr = next(c); herr != nil {
					http.Error(w, herr.Error(), http.StatusInternalServerError) // the answer the client gets is recorded
				}
				w.Finish() // a handler that sent nothing answers 200
			})
		return herr
	}, nil
}

// Example adapts the guard to a small framework of one's own in a few
// lines; the net/http, Gin, Echo and Fiber middleware are built the same
// way.
func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	orders := 0
	h, err := Idempotent(store, func(c *Ctx) error {
		orders++
		c.W.WriteHeader(http.StatusCreated)
		_, err := fmt.Fprintf(c.W, "order %d for %s", orders, c.User)
		return err
	})
	if err != nil {
		panic(err)
	}
	for _, user := range []string{"alice", "alice", "bob"} {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"item":"book"}`))
		req.Header.Set("Idempotency-Key", "order-1")
		rec := httptest.NewRecorder()
		_ = h(&Ctx{W: rec, R: req, User: user})
		fmt.Printf("%s: %d %q replayed=%q\n", user, rec.Code, rec.Body, rec.Header().Get("Idempotent-Replayed"))
	}
	// Output:
	// alice: 201 "order 1 for alice" replayed=""
	// alice: 201 "order 1 for alice" replayed="true"
	// bob: 201 "order 2 for bob" replayed=""
}
