package grpcmw_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/internal/testenv"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestBehaviour runs the behaviour rows over a real gRPC connection on
// loopback, with the interceptor over the memory store and a real Redis.
func TestBehaviour(t *testing.T) {
	behaviortest.ForEachStore(t, func(t *testing.T, store *behaviortest.OutageStore) {
		routes := behaviortest.Routes()
		icpt, err := grpcmw.UnaryServerInterceptor(store, grpcmw.WithPolicyFunc(func(_ context.Context, method string) *idempotency.Policy {
			return behaviortest.PolicyFor(routes, method[strings.LastIndex(method, "/")+1:])
		}))
		if err != nil {
			t.Fatal(err)
		}
		up := behaviortest.NewOpUpstream()
		conn := serveOps(t, up, icpt)
		behaviortest.RunOps(t, behaviortest.OpTarget{
			Do: func(ctx context.Context, c behaviortest.OpCall) (behaviortest.OpResult, error) {
				return callOp(ctx, conn, c)
			},
			Upstream:     up,
			StoreOutage:  store.Outage,
			MultipleKeys: true,
			StoresErrors: true,
			RequestCap:   true,
		})
	})
}
