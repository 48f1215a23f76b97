package admin_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/admin"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

func TestUnknownKeyIs404AndSaysWhichInputsCounted(t *testing.T) {
	f := newFixture(t, setup{})
	a := f.inspect(t, "", keyBody())
	requireProblem(t, a, http.StatusNotFound, "admin-key-not-found")
	key, _, err := idempotency.RequestKey(f.pol, request(rawKey))
	require.NoError(t, err)
	require.Equal(t, idempotency.KeyID(key), a.str("key_id"))
	require.Equal(t, []any{"header:Authorization"}, a.get("inputs.scope"))

	a = f.purge(t, "?force=true", keyBody("reason", "INC-1"))
	requireProblem(t, a, http.StatusNotFound, "admin-key-not-found")
	audit := f.logs.records(t, "admin: purge")
	require.Len(t, audit, 1)
	require.Equal(t, "absent", audit[0]["result"])
	require.Equal(t, "INFO", audit[0]["level"], "nothing failed")
	require.Nil(t, audit[0]["error"])
	require.Equal(t, "INC-1", audit[0]["reason"])
	require.Zero(t, f.counter(t, "gopotency_admin_purges_total"), "nothing purged")
	f.requireNoSecrets(t)
}

// states puts rawKey in each state a request can leave it in.
var states = []struct {
	name    string
	state   string
	mark    string
	status  int
	settle  func(t *testing.T, l *idempotency.Lease)
	retry   string // what a retry gets: replay, run, or a problem slug
	expired bool   // move the clock past the lease
}{
	{name: "in flight", state: "in_flight", retry: "request-in-progress", settle: func(*testing.T, *idempotency.Lease) {}},
	{name: "lease expired", state: "lease_expired", retry: "outcome-unknown", expired: true, settle: func(*testing.T, *idempotency.Lease) {}},
	{name: "completed", state: "completed", mark: "none", status: 201, retry: "replay", settle: func(t *testing.T, l *idempotency.Lease) {
		require.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 201, Body: []byte(`{"id":7}`),
			Headers: []idempotency.Header{{Name: "Content-Type", Value: "application/json"}, {Name: "Location", Value: "/orders/7"}, {Name: "Vary", Value: "a"}, {Name: "Vary", Value: "b"}}}))
	}},
	{name: "too large", state: "completed", mark: "too_large", status: 200, retry: "response-too-large", settle: func(t *testing.T, l *idempotency.Lease) {
		require.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 200, Mark: idempotency.MarkTooLarge}))
	}},
	{name: "incomplete", state: "completed", mark: "incomplete", status: 202, retry: "response-incomplete", settle: func(t *testing.T, l *idempotency.Lease) {
		require.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 202, Mark: idempotency.MarkIncomplete, Headers: []idempotency.Header{{Name: "Content-Type", Value: "text/plain"}}}))
	}},
	{name: "unknown", state: "completed", mark: "unknown", retry: "outcome-unknown", settle: func(t *testing.T, l *idempotency.Lease) {
		require.NoError(t, l.Abandon(context.Background(), true))
	}},
	{name: "evicted", state: "completed", mark: "evicted", status: 201, retry: "response-evicted", settle: func(t *testing.T, l *idempotency.Lease) {
		// The fixture's store has a small byte budget: the response is
		// recorded, then dropped to its status.
		require.NoError(t, l.Complete(context.Background(), &idempotency.Record{Status: 201, Body: make([]byte, 80_000)}))
	}},
}

// inState returns a fixture whose store holds rawKey as settle (and the
// clock, when expired) left it, the lease that claimed it, and when. The
// store's byte budget is small enough for an 80 kB response to be evicted.
func inState(t *testing.T, settle func(*testing.T, *idempotency.Lease), expired bool) (*fixture, *idempotency.Lease, time.Time) {
	c := &clock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	ms := memstore.New(memstore.Options{Now: c.Now, MaxBytes: 50_000})
	t.Cleanup(func() { _ = ms.Close() })
	f := newFixture(t, setup{store: ms})
	f.clock = c
	f.eng = idempotency.New(f.store, idempotency.WithClock(c.Now, func(context.Context, time.Duration) error { return nil }))
	began := c.Now()
	l := f.begin(t, rawKey)
	settle(t, l)
	if expired {
		c.Advance(f.pol.Lease + time.Second)
	}
	return f, l, began
}

func TestInspectEachState(t *testing.T) {
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			f, l, began := inState(t, st.settle, st.expired)
			a := f.inspect(t, "", keyBody())
			require.Equal(t, http.StatusOK, a.status, a.raw)
			require.Equal(t, "application/json", a.header.Get("Content-Type"))
			require.Equal(t, "no-store", a.header.Get("Cache-Control"))
			require.Equal(t, st.state, a.str("state"))
			require.Equal(t, st.mark, a.str("mark"))
			require.EqualValues(t, st.status, numberOr0(a.get("status")))
			require.Equal(t, idempotency.KeyID(l.StorageKey()), a.str("key_id"))
			require.Equal(t, "default_policy", a.str("policy"))
			ent, err := f.store.Get(context.Background(), l.StorageKey())
			require.NoError(t, err)
			require.Equal(t, ent.Fingerprint[:12], a.str("fingerprint"), "the fingerprint the request was claimed with")
			require.Equal(t, "sent", a.str("inputs.key"))
			require.Equal(t, began.Add(f.pol.Retention).Format(time.RFC3339), a.str("expires_at")[:20], "retention runs from the claim or the record")
			if st.state == "completed" {
				require.Equal(t, began.Format(time.RFC3339), a.str("recorded_at"))
				require.Nil(t, a.get("lease_expires_at"), "a record has no lease")
			} else {
				require.Nil(t, a.get("recorded_at"))
				require.Equal(t, began.Add(f.pol.Lease).Format(time.RFC3339), a.str("lease_expires_at"))
			}
			switch st.retry {
			case "replay":
				require.Equal(t, "replay", a.str("retry.outcome"))
				require.EqualValues(t, 201, a.get("retry.status"))
				require.Equal(t, []any{"Content-Type", "Location", "Vary"}, a.get("headers"), "names only, once each")
				require.EqualValues(t, 8, a.get("body_bytes"))
			default:
				require.Equal(t, "reject", a.str("retry.outcome"))
				require.Equal(t, idempotency.ProblemTypeBase+st.retry, a.str("retry.type"))
			}
			require.Nil(t, a.get("body_base64"), "the body is never shown unless asked for")
			require.NotContains(t, a.raw, "Bearer", "no credential is echoed")

			a = f.inspect(t, "?include_body=true", keyBody())
			require.Equal(t, http.StatusOK, a.status, a.raw)
			if st.retry == "replay" {
				require.Equal(t, base64.StdEncoding.EncodeToString([]byte(`{"id":7}`)), a.str("body_base64"))
			}
			inspected := f.logs.records(t, "admin: key inspected")
			require.Len(t, inspected, 2)
			require.Equal(t, true, inspected[1]["include_body"], "showing a body is in the audit log")
			require.Equal(t, st.state, inspected[1]["state"])
			f.requireNoSecrets(t)
		})
	}
}

func numberOr0(v any) float64 {
	n, _ := v.(float64)
	return n
}

func TestPurgeEachState(t *testing.T) {
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			f, l, _ := inState(t, st.settle, st.expired)
			var held idempotency.Claim
			if st.state == "in_flight" {
				held = claimOf(t, f.store, f.pol, l)
				a := f.purge(t, "", keyBody())
				requireProblem(t, a, http.StatusConflict, "admin-purge-refused")
				require.Equal(t, "in_flight", a.str("state"))
				require.NotEmpty(t, a.str("lease_expires_at"))
				require.Contains(t, a.str("detail"), "force=true")
				_, err := f.store.Get(context.Background(), l.StorageKey())
				require.NoError(t, err, "refused: the claim is still there")
				audit := f.logs.records(t, "admin: purge")
				require.Len(t, audit, 1)
				require.Equal(t, "refused", audit[0]["result"])
			}
			a := f.purge(t, "?force=true", keyBody("reason", "checked the order; safe to retry"))
			require.Equal(t, http.StatusOK, a.status, a.raw)
			require.Equal(t, true, a.get("purged"))
			require.Equal(t, st.state, a.str("previous.state"))
			require.Equal(t, st.mark, a.str("previous.mark"))
			require.Equal(t, st.state == "in_flight", a.get("forced") == true, "forced only when force mattered")
			require.Equal(t, st.state == "in_flight", a.str("warning") != "")
			_, err := f.store.Get(context.Background(), l.StorageKey())
			require.ErrorIs(t, err, idempotency.ErrNotFound, "purged")

			mark := st.mark
			if mark == "" {
				mark = "-"
			}
			require.EqualValues(t, 1, f.counter(t, "gopotency_admin_purges_total", "state", st.state, "mark", mark))
			audit := f.logs.records(t, "admin: purge")
			rec := audit[len(audit)-1]
			require.Equal(t, "purged", rec["result"])
			require.Equal(t, admin.TokenID(testToken), rec["who"])
			require.Equal(t, idempotency.KeyID(l.StorageKey()), rec["key_id"])
			require.Equal(t, "default_policy", rec["policy"])
			require.Equal(t, st.state, rec["previous_state"])
			require.Equal(t, mark, rec["mark"])
			require.EqualValues(t, st.status, rec["status"])
			require.Equal(t, "checked the order; safe to retry", rec["reason"])
			wantLevel := "INFO"
			if st.state == "in_flight" {
				wantLevel = "WARN"
			}
			require.Equal(t, wantLevel, rec["level"])

			// The client's retry now runs.
			d := f.eng.Begin(context.Background(), f.pol, request(rawKey))
			require.Equal(t, idempotency.Proceed, d.Kind, "%+v", d)
			require.NoError(t, d.Lease.Abandon(context.Background(), false))
			if st.state == "in_flight" {
				// What the caveat warns about: the purged request's holder
				// re-creates its claim at its next renewal.
				require.NoError(t, f.store.Extend(context.Background(), held))
				ent, err := f.store.Get(context.Background(), l.StorageKey())
				require.NoError(t, err)
				require.Equal(t, idempotency.InFlight, ent.State)
			}
			f.requireNoSecrets(t)
		})
	}
}

func TestCorruptRecordIsReportedAndPurgeable(t *testing.T) {
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	key, _, err := idempotency.RequestKey(ptr(idempotency.DefaultPolicy()), request(rawKey))
	require.NoError(t, err)
	fs := &faultyStore{Store: ms, corruptKey: key}
	f := newFixture(t, setup{store: fs})

	a := f.inspect(t, "", keyBody())
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "corrupt", a.str("state"))
	require.Contains(t, a.str("error"), "unexpected end of data")
	require.Equal(t, "reject", a.str("retry.outcome"))
	require.EqualValues(t, 500, a.get("retry.status"), "the engine fails such a key closed")

	a = f.purge(t, "", keyBody())
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "corrupt", a.str("previous.state"))
	require.Equal(t, []string{key}, fs.deleted)
	require.EqualValues(t, 1, f.counter(t, "gopotency_admin_purges_total", "state", "corrupt", "mark", "-"))
	requireProblem(t, f.inspect(t, "", keyBody()), http.StatusNotFound, "admin-key-not-found")
}

func ptr[T any](v T) *T { return &v }

func TestStoreFailureIs503(t *testing.T) {
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	down := fmt.Errorf("faulty: dial tcp 10.0.0.1:6379: connection refused: %w", idempotency.ErrStoreUnavailable)
	fs := &faultyStore{Store: ms, getErr: down}
	f := newFixture(t, setup{store: fs})
	for _, a := range []answer{f.inspect(t, "", keyBody()), f.purge(t, "", keyBody())} {
		requireProblem(t, a, http.StatusServiceUnavailable, "store-unavailable")
		require.Equal(t, "1", a.header.Get("Retry-After"))
		require.NotContains(t, a.raw, "10.0.0.1", "internals stay in the log")
		require.NotEmpty(t, a.str("key_id"))
	}
	require.Contains(t, f.logs.String(), "10.0.0.1")

	// Get works, Delete fails: the purge reports it and the audit log says so.
	fs.mu.Lock()
	fs.getErr, fs.deleteErr = nil, down
	fs.mu.Unlock()
	l := f.begin(t, rawKey)
	require.NoError(t, l.Abandon(context.Background(), true))
	a := f.purge(t, "", keyBody())
	requireProblem(t, a, http.StatusServiceUnavailable, "store-unavailable")
	require.Contains(t, a.str("detail"), "inspect the key again")
	audit := f.logs.records(t, "admin: purge")
	require.Equal(t, "failed", audit[len(audit)-1]["result"])
	require.Equal(t, "ERROR", audit[len(audit)-1]["level"])
	require.Zero(t, f.counter(t, "gopotency_admin_purges_total"))

	// The store's own deadline passing is the same answer.
	fs.mu.Lock()
	fs.getErr = fmt.Errorf("faulty: get: %w", context.DeadlineExceeded)
	fs.mu.Unlock()
	requireProblem(t, f.inspect(t, "", keyBody()), http.StatusServiceUnavailable, "store-unavailable")
	f.requireNoSecrets(t)
}

func TestBadRequestsAreProblems(t *testing.T) {
	auto := idempotency.DefaultPolicy()
	auto.AutoKey = &idempotency.AutoKey{Body: true}
	f := newFixture(t, setup{named: map[string]*idempotency.Policy{"orders": ptr(idempotency.DefaultPolicy()), "auto": &auto}})
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		slug, detail             string
	}{
		{"unknown field", "POST", admin.RouteInspect, `{"key":"k","scope_headers":{}}`, 400, "admin-bad-request", `unknown field "scope_headers"`},
		{"not JSON", "POST", admin.RouteInspect, `key=k`, 400, "admin-bad-request", "body"},
		{"empty body", "POST", admin.RoutePurge, ``, 400, "admin-bad-request", "JSON object"},
		{"two objects", "POST", admin.RoutePurge, `{"key":"k"}{"key":"j"}`, 400, "admin-bad-request", "one JSON object"},
		{"unknown policy", "POST", admin.RouteInspect, `{"key":"k","policy":"nope"}`, 400, "admin-bad-request", "configured: auto, orders"},
		{"malformed key", "POST", admin.RouteInspect, `{"key":"\"unterminated"}`, 400, "key-malformed", "unterminated"},
		{"no key", "POST", admin.RouteInspect, `{"headers":{"Authorization":"x"}}`, 400, "admin-bad-request", "key is required"},
		{"key given twice", "POST", admin.RouteInspect, `{"key":"a","headers":{"Idempotency-Key":"b"}}`, 400, "admin-bad-request", "give the key once"},
		{"header twice", "POST", admin.RouteInspect, `{"key":"a","headers":{"X-Tenant":"1","x-tenant":"2"}}`, 400, "admin-bad-request", "X-Tenant given twice"},
		{"both bodies", "POST", admin.RouteInspect, `{"policy":"auto","method":"POST","path":"/","body":"a","body_base64":"YQ=="}`, 400, "admin-bad-request", "not both"},
		{"bad base64", "POST", admin.RouteInspect, `{"policy":"auto","method":"POST","path":"/","body_base64":"!!"}`, 400, "admin-bad-request", "body_base64"},
		{"derived without request", "POST", admin.RouteInspect, `{"policy":"auto","body":"a"}`, 400, "admin-bad-request", "method, path"},
		{"derived, anonymous", "POST", admin.RouteInspect, `{"policy":"auto","method":"POST","path":"/","body":"a"}`, 400, "admin-bad-request", "headers.Authorization"},
		{"control in reason", "POST", admin.RoutePurge, `{"key":"k","reason":"a\nfake log line"}`, 400, "admin-bad-request", "control"},
		{"long reason", "POST", admin.RoutePurge, `{"key":"k","reason":"` + strings.Repeat("r", 501) + `"}`, 400, "admin-bad-request", "at most 500"},
		{"unknown query", "POST", admin.RoutePurge + "?forse=true", `{"key":"k"}`, 400, "admin-bad-request", `"forse"`},
		{"bad flag", "POST", admin.RouteInspect + "?include_body=maybe", `{"key":"k"}`, 400, "admin-bad-request", "include_body"},
		{"flag twice", "POST", admin.RoutePurge + "?force=false&force=true", `{"key":"k"}`, 400, "admin-bad-request", "once"},
		{"too large", "POST", admin.RouteInspect, `{"key":"` + strings.Repeat("k", 2<<20) + `"}`, 400, "admin-bad-request", "bytes"},
		{"GET inspect", "GET", admin.RouteInspect, ``, 405, "admin-method-not-allowed", "use POST"},
		{"DELETE purge", "DELETE", admin.RoutePurge, `{"key":"k"}`, 405, "admin-method-not-allowed", "use POST"},
		{"unknown route", "GET", "/admin/v1/keys", ``, 404, "admin-not-found", "docs/admin.md"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := f.do(t, c.method, c.path, testToken, c.body)
			requireProblem(t, a, c.status, c.slug)
			require.Contains(t, a.str("detail"), c.detail)
			if c.status == 405 {
				require.Equal(t, "POST", a.header.Get("Allow"))
			}
		})
	}
	require.Empty(t, f.logs.records(t, "admin: purge"), "nothing resolved, nothing to audit")
}

// TestInputsShapeTheKey: each scope input moves the key, inputs a policy
// does not read are reported as ignored, and a derived key is found from
// the request it was derived from.
func TestInputsShapeTheKey(t *testing.T) {
	tenant := idempotency.DefaultPolicy()
	tenant.ScopeHeaders, tenant.ScopePrincipal = []string{"X-Tenant"}, true
	auto := idempotency.DefaultPolicy()
	auto.ScopeHeaders = nil
	auto.AutoKey = &idempotency.AutoKey{JSONFields: []string{"order.ref"}, Headers: []string{"X-Client"}, SourceAddress: true}
	f := newFixture(t, setup{named: map[string]*idempotency.Policy{"tenant": &tenant, "auto": &auto}})

	// A key written by a request under the tenant policy.
	h := http.Header{}
	h.Set("Idempotency-Key", rawKey)
	h.Set("X-Tenant", "acme")
	r := &idempotency.Request{Method: "POST", Path: "/pay", Header: h, Principal: "spiffe://c/ns/shop/sa/web"}
	d := f.eng.Begin(context.Background(), &tenant, r)
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NoError(t, d.Lease.Complete(context.Background(), &idempotency.Record{Status: 200}))

	body := map[string]any{"policy": "tenant", "key": `"` + rawKey + `"`, "headers": map[string]string{"x-tenant": "acme", "Authorization": bearer}, "principal": "spiffe://c/ns/shop/sa/web", "method": "POST"}
	a := f.inspect(t, "", body)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "tenant", a.str("policy"))
	require.Equal(t, []any{"header:X-Tenant", "principal"}, a.get("inputs.scope"))
	require.Equal(t, []any{"header:Authorization", "method"}, a.get("inputs.ignored"), "inputs this policy does not read")

	body["principal"] = "spiffe://c/ns/shop/sa/other"
	requireProblem(t, f.inspect(t, "", body), http.StatusNotFound, "admin-key-not-found")
	delete(body, "principal")
	requireProblem(t, f.inspect(t, "", body), http.StatusNotFound, "admin-key-not-found")
	requireProblem(t, f.inspect(t, "", map[string]any{"key": rawKey, "headers": map[string]string{"X-Tenant": "acme"}}), http.StatusNotFound, "admin-key-not-found")

	// A derived key: the request it came from finds it.
	ah := http.Header{}
	ah.Set("X-Client", "mobile")
	ar := &idempotency.Request{Method: "POST", Path: "/orders", Header: ah, Body: []byte(`{"order":{"ref":"A-1","qty":2}}`), SourceAddress: "198.51.100.4:40100"}
	d = f.eng.Begin(context.Background(), &auto, ar)
	require.Equal(t, idempotency.Proceed, d.Kind)
	require.NoError(t, d.Lease.Abandon(context.Background(), true))
	derived := map[string]any{"policy": "auto", "method": "POST", "path": "/orders", "headers": map[string]string{"X-Client": "mobile"},
		"body": `{"order":{"qty":3,"ref":"A-1"}}`, "source_address": "198.51.100.4"}
	a = f.inspect(t, "", derived)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	require.Equal(t, "derived", a.str("inputs.key"))
	require.Equal(t, []any{"source_address"}, a.get("inputs.scope"))
	require.Equal(t, "unknown", a.str("mark"))
	derived["body_base64"], derived["body"] = base64.StdEncoding.EncodeToString([]byte(`{"order":{"ref":"A-1"}}`)), nil
	delete(derived, "body")
	require.Equal(t, http.StatusOK, f.inspect(t, "", derived).status, "only order.ref is hashed")
	derived["source_address"] = "198.51.100.5"
	requireProblem(t, f.inspect(t, "", derived), http.StatusNotFound, "admin-key-not-found")
	f.requireNoSecrets(t)
}

func TestPoliciesListTheirKeyInputs(t *testing.T) {
	tenant := idempotency.DefaultPolicy()
	tenant.ScopeHeaders, tenant.ScopePrincipal = []string{"X-Tenant"}, true
	f := newFixture(t, setup{named: map[string]*idempotency.Policy{"tenant": &tenant}})
	a := f.do(t, http.MethodGet, admin.RoutePolicies, testToken, nil)
	require.Equal(t, http.StatusOK, a.status, a.raw)
	ps := a.get("policies").([]any)
	require.Len(t, ps, 2)
	def, named := ps[0].(map[string]any), ps[1].(map[string]any)
	require.Equal(t, "default_policy", def["name"])
	require.Equal(t, []any{"Authorization"}, def["scope_headers"])
	require.Equal(t, "Idempotency-Key", def["key_header"])
	require.Equal(t, "tenant", named["name"])
	require.Equal(t, true, named["scope_principal"])
	require.Equal(t, "24h0m0s", named["retention"])
	require.Equal(t, "record", named["unknown_outcome"])

	// "default_policy" names the default unless a policy has that name.
	l := f.begin(t, rawKey)
	require.NoError(t, l.Abandon(context.Background(), true))
	require.Equal(t, http.StatusOK, f.inspect(t, "", keyBody("policy", "default_policy")).status)
}

// TestAuditSurvivesAQuietLogLevel: log.level: error drops the server's own
// info and warn lines, not the audit trail.
func TestAuditSurvivesAQuietLogLevel(t *testing.T) {
	f := newFixture(t, setup{logLevel: slog.LevelError})
	l := f.begin(t, rawKey)
	require.NoError(t, l.Abandon(context.Background(), true))
	require.Equal(t, http.StatusOK, f.inspect(t, "", keyBody()).status)
	require.Equal(t, http.StatusOK, f.purge(t, "", keyBody()).status)
	f.do(t, http.MethodGet, admin.RoutePolicies, "wrong-token-of-good-length", nil)
	require.Len(t, f.logs.records(t, "admin: key inspected"), 1)
	require.Len(t, f.logs.records(t, "admin: purge"), 1)
	require.Empty(t, f.logs.records(t, "admin API: request refused"), "ordinary warnings follow the level")
}
