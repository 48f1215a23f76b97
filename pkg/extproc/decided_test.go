package extproc

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDecidedTellsEachOutcome: Options.Decided hears each request's
// outcome, its policy's name and a reject's problem, with the stream's
// context, once per request.
func TestDecidedTellsEachOutcome(t *testing.T) {
	var mu sync.Mutex
	var got []Decision
	e := newEnv(t, func(o *Options) {
		o.Decided = func(ctx context.Context, d Decision) {
			require.NotNil(t, ctx)
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
		}
	})
	run := func(policy string, reqs ...func(*stream)) {
		s := e.open(t, policy)
		for _, r := range reqs {
			r(s)
		}
		require.NoError(t, s.s.CloseSend())
	}
	run("", func(s *stream) { s.do(reqHeaders("GET", "/orders", "k1", true)) })
	run("required", func(s *stream) { s.do(reqHeaders("POST", "/pay", "", true)) })
	first := func(s *stream) {
		s.do(reqHeaders("POST", "/pay", "k2", false))
		s.do(reqBody(`{}`, true))
		s.do(respHeaders("201", true))
	}
	run("required", first)
	run("required", func(s *stream) { s.do(reqHeaders("POST", "/pay", "k2", false)); s.do(reqBody(`{}`, true)) })
	run("required", func(s *stream) { s.do(reqHeaders("POST", "/pay", "k2", false)); s.do(reqBody(`{"x":1}`, true)) })
	run("nope", func(s *stream) { s.do(reqHeaders("POST", "/pay", "k3", true)) })
	e.waitIdle(t)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []Decision{
		{Policy: DefaultPolicyName, Outcome: "pass"},
		{Policy: "required", Outcome: "reject", Problem: "key-missing"},
		{Policy: "required", Outcome: "proceed"},
		{Policy: "required", Outcome: "replay"},
		{Policy: "required", Outcome: "reject", Problem: "key-reused"},
		{Outcome: "reject", Problem: "proxy-misconfigured"},
	}, got)
}
