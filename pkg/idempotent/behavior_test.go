package idempotent_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotent"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type ctxKey int

const (
	scopeKey ctxKey = iota
	replayedKey
)

// TestBehaviour runs the behaviour rows a plain function can express, over
// the memory store and a real Redis: one Runner per route of
// behaviortest.Routes, the scope from the context.
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		up := behaviortest.NewOpUpstream()
		runners := map[string]*idempotent.Runner{}
		for _, route := range behaviortest.Routes() {
			name := route.PathPrefix[1 : len(route.PathPrefix)-1]
			opts := []idempotent.Option{idempotent.WithPolicy(&route.Policy),
				idempotent.WithScopeFunc(func(ctx context.Context) string { s, _ := ctx.Value(scopeKey).(string); return s }),
				idempotent.WithReplayHook(func(ctx context.Context, _ string) { *ctx.Value(replayedKey).(*bool) = true })}
			if !route.Policy.KeyRequired { // a runner requires a key unless told otherwise
				opts = append(opts, idempotent.WithOptionalKey())
			}
			r, err := idempotent.NewRunner(store, "behaviour-"+name, opts...)
			if err != nil {
				t.Fatal(err)
			}
			runners[name] = r
		}
		handler := func(ctx context.Context, req behaviortest.OpRequest) (behaviortest.OpReply, error) {
			reply, err := up.Serve(ctx, req)
			if errors.Is(err, behaviortest.ErrOpUncertain) {
				err = idempotent.Uncertain(err)
			}
			return reply, err
		}
		do := func(ctx context.Context, c behaviortest.OpCall) (behaviortest.OpResult, error) {
			var res behaviortest.OpResult
			ctx = context.WithValue(context.WithValue(ctx, scopeKey, c.Scope), replayedKey, &res.Replayed)
			var err error
			if r := runners[c.Route]; r == nil {
				res.Reply, err = handler(ctx, c.Request) // "plain": no idempotency
			} else {
				res.Reply, err = idempotent.New(r, handler).Do(ctx, c.Key, c.Request)
			}
			var refused *idempotent.Error
			switch {
			case errors.As(err, &refused):
				res.Problem, res.RetryAfter = refused.Problem.Slug(), refused.RetryAfter()
			case err != nil:
				res.Err = err.Error()
			}
			return res, nil
		}
		behaviortest.RunOps(t, behaviortest.OpTarget{Do: do, Upstream: up, StoreOutage: store.Outage,
			MalformedKeys: []string{"line\nbreak", "nul\x00", "\xff not utf-8", "bell\a"}})
	})
}
