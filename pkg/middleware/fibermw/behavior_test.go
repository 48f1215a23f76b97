package fibermw_test

import (
	"net"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/adaptor"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/middleware/fibermw"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBehaviour runs the shared behaviour suite against the Fiber
// middleware over the memory store and a real Redis, through a real
// fasthttp server on loopback.
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		routes := behaviortest.Routes()
		mw, err := fibermw.New(store, fibermw.WithPolicyFunc(func(c fiber.Ctx) *idempotency.Policy {
			return behaviortest.Lookup(routes, c.Path())
		}))
		if err != nil {
			t.Fatal(err)
		}
		up := behaviortest.NewUpstream()
		app := fiber.New()
		app.Use(mw)
		app.All("/*", adaptor.HTTPHandler(up))
		behaviortest.Run(t, behaviortest.Target{BaseURL: serve(t, app), Upstream: up, StoreOutage: store.Outage})
	})
}

// serve runs app on a loopback port until the test ends.
func serve(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true}) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	return "http://" + ln.Addr().String()
}
