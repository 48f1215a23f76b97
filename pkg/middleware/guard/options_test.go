package guard_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/guard"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

type errorHandler func(p *idempotency.Problem)

// serve runs one keyless POST through a guard built from opts and returns
// the status and the problem the error handler saw, if any.
func serve(t *testing.T, opts ...guard.Option[*http.Request, errorHandler]) (int, *idempotency.Problem) {
	t.Helper()
	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = store.Close() })
	o := guard.Apply(opts...)
	g, err := guard.New(store, o.Config)
	if err != nil {
		t.Fatal(err)
	}
	return run(g, o)
}

func run(g *guard.Guard[*http.Request], o guard.Options[*http.Request, errorHandler]) (int, *idempotency.Problem) {
	r := httptest.NewRequest(http.MethodPost, "/orders", nil)
	w := httptest.NewRecorder()
	var seen *idempotency.Problem
	out := guard.HTTPResponder{ResponseWriter: w}
	if o.ErrorHandler != nil {
		out.OnReject = func(p *idempotency.Problem, _ error) { seen = p; o.ErrorHandler(p); guard.WriteProblem(w, p) }
	}
	g.Serve(r, guard.HTTPRequest(r), out, func() { w.WriteHeader(http.StatusCreated) },
		func(rec *guard.Recorder) { cw := guard.NewWriter(w, rec); cw.WriteHeader(http.StatusCreated) })
	return w.Code, seen
}

// WithPolicy takes a pointer like WithPolicyFunc's result and Config.Policy;
// the policy is copied when the guard is built, so changing it afterwards
// changes nothing, and nil means DefaultPolicy.
func TestWithPolicyCopiedAndNilIsDefault(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.KeyRequired = true
	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = store.Close() })
	o := guard.Apply(guard.WithPolicy[*http.Request, errorHandler](&p), guard.WithErrorHandler[*http.Request](errorHandler(func(*idempotency.Problem) {})))
	g, err := guard.New(store, o.Config)
	if err != nil {
		t.Fatal(err)
	}
	p.KeyRequired = false // after New: no effect
	if code, seen := run(g, o); code != http.StatusBadRequest || seen == nil {
		t.Errorf("required key: status %d, problem %v; want 400 through the error handler", code, seen)
	}
	if code, _ := serve(t, guard.WithPolicy[*http.Request, errorHandler](nil)); code != http.StatusCreated {
		t.Errorf("nil policy: status %d, want the default policy's pass-through 201", code)
	}
}

// A later option overrides an earlier one: WithPolicy and WithPolicyFunc
// replace each other.
func TestApplyLaterWins(t *testing.T) {
	required := idempotency.DefaultPolicy()
	required.KeyRequired = true
	o := guard.Apply(
		guard.WithPolicyFunc[*http.Request, errorHandler](func(*http.Request) *idempotency.Policy { return nil }),
		guard.WithPolicy[*http.Request, errorHandler](&required))
	if o.PolicyFunc != nil || o.Policy != &required {
		t.Errorf("WithPolicy after WithPolicyFunc: PolicyFunc set %v, Policy %p", o.PolicyFunc != nil, o.Policy)
	}
	if code, _ := serve(t, guard.WithPolicy[*http.Request, errorHandler](&required),
		guard.WithPolicyFunc[*http.Request, errorHandler](func(*http.Request) *idempotency.Policy { return nil })); code != http.StatusCreated {
		t.Errorf("WithPolicyFunc after WithPolicy: status %d, want 201 (nil policy passes)", code)
	}
}
