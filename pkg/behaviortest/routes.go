package behaviortest

import (
	"strings"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// Route is a path prefix and the policy a front end must apply to requests
// under it. Requests under no prefix get no idempotency at all.
type Route struct {
	PathPrefix string
	Policy     idempotency.Policy
}

// Short durations and caps the routes use, so the suite stays fast.
const (
	// WaitInFlight of /wait/: long enough for any duplicate of the suite
	// to see its first request finish.
	WaitInFlight = 5 * time.Second
	// ShortLease of /lease/: the upstream sleeps several leases long, so
	// only renewal keeps a duplicate out.
	ShortLease = 300 * time.Millisecond
	// SmallCap is MaxRequestBody and MaxResponseBody of /small/.
	SmallCap = 4 << 10
)

// Routes returns the routes the front end under test must apply, most
// specific first. Every policy starts from idempotency.DefaultPolicy (POST
// and PATCH, scope from Authorization, fingerprint over the body, 24h
// retention, 30s lease, 5xx/408/429 not stored, Set-Cookie and the other
// credentials never replayed) and changes only what its row needs:
//
//	/required/  KeyRequired: a POST without a key is a 400.
//	/optional/  the defaults: a POST without a key passes through.
//	/wait/      WaitInFlight 5s: a duplicate of a running request waits
//	            for it and replays it instead of getting 409.
//	/auto/      AutoKey over the whole body: without a key, identical
//	            bodies are one operation.
//	/small/     MaxRequestBody and MaxResponseBody 4 KiB: bigger answers
//	            leave a tombstone (413 on retry), bigger requests get 413.
//	/lease/     Lease 300ms, renewed while the handler runs.
//
// Each call returns fresh copies, so callers may keep pointers into them.
func Routes() []Route {
	route := func(prefix string, change func(p *idempotency.Policy)) Route {
		p := idempotency.DefaultPolicy()
		change(&p)
		return Route{PathPrefix: prefix, Policy: p}
	}
	return []Route{
		route("/required/", func(p *idempotency.Policy) { p.KeyRequired = true }),
		route("/optional/", func(*idempotency.Policy) {}),
		route("/wait/", func(p *idempotency.Policy) { p.WaitInFlight = WaitInFlight }),
		route("/auto/", func(p *idempotency.Policy) { p.AutoKey = &idempotency.AutoKey{Body: true} }),
		route("/small/", func(p *idempotency.Policy) { p.MaxRequestBody, p.MaxResponseBody = SmallCap, SmallCap }),
		route("/lease/", func(p *idempotency.Policy) { p.Lease = ShortLease }),
	}
}

// Lookup returns the policy of the first route whose prefix starts path,
// or nil when none does. The pointer points into routes.
func Lookup(routes []Route, path string) *idempotency.Policy {
	for i := range routes {
		if strings.HasPrefix(path, routes[i].PathPrefix) {
			return &routes[i].Policy
		}
	}
	return nil
}
