package stdhttp_test

import (
	"net/http"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/stdhttp"
)

func TestCapture(t *testing.T) {
	behaviortest.RunCapture(t, func(t testing.TB, store idempotency.Store, p idempotency.Policy, h http.Handler) http.Handler {
		mw, err := stdhttp.New(store, stdhttp.WithPolicy(&p))
		if err != nil {
			t.Fatal(err)
		}
		return mw(h)
	})
}
