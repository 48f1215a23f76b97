package extproc

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// TestCancelAfterResponseHeadRecordsIncomplete: the upstream answered and
// the body was cut off: it ran, so the key is recorded as
// response-incomplete with the status, never run again.
func TestCancelAfterResponseHeadRecordsIncomplete(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "short") // 150ms lease
	s.do(reqHeaders("POST", "/slow", "k-cut", false))
	s.do(reqBody("x", true))
	s.do(respHeaders("200", false))
	s.do(respBody("partial", false))
	s.cancel() // client gone or upstream reset: Envoy resets the stream
	e.waitIdle(t)

	ent := e.entry(t, "k-cut")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, idempotency.MarkIncomplete, ent.Record.Mark)
	require.Equal(t, 200, ent.Record.Status)
	for range 2 {
		time.Sleep(200 * time.Millisecond) // past the lease: still never runs again
		r := e.open(t, "short")
		r.do(reqHeaders("POST", "/slow", "k-cut", false))
		require.Equal(t, "response-incomplete", requireProblem(t, r.do(reqBody("x", true)), 424))
	}
}

// TestCancelBeforeResponseHeadRecordsUnknown: forwarded, no answer yet:
// the outcome is unknown, and stays so past the lease.
func TestCancelBeforeResponseHeadRecordsUnknown(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "short")
	s.do(reqHeaders("POST", "/slow", "k-gone", false))
	s.do(reqBody("x", true))
	s.cancel()
	e.waitIdle(t)
	ent := e.entry(t, "k-gone")
	require.NotNil(t, ent)
	require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark)
	time.Sleep(200 * time.Millisecond)
	r := e.open(t, "short")
	r.do(reqHeaders("POST", "/slow", "k-gone", false))
	require.Equal(t, "outcome-unknown", requireProblem(t, r.do(reqBody("x", true)), 424))
}

// TestLeaseIsRenewedWhileInFlight: a slow upstream never lets a duplicate
// through, however long it takes.
func TestLeaseIsRenewedWhileInFlight(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "renew") // 300ms lease, renewed every 100ms
	s.do(reqHeaders("POST", "/slow", "k-renew", false))
	s.do(reqBody("x", true))
	time.Sleep(900 * time.Millisecond) // three lease lengths
	ent := e.entry(t, "k-renew")
	require.NotNil(t, ent, "the lease was not renewed")
	require.Equal(t, idempotency.InFlight, ent.State)
	s.do(respHeaders("200", true))
	require.Equal(t, idempotency.Completed, e.entry(t, "k-renew").State)
}

// TestEndBeforeForwardingLocksNothing: a stream that ends while the server
// waits for the body never acquired anything.
func TestEndBeforeForwardingLocksNothing(t *testing.T) {
	e := newEnv(t)
	for _, end := range []string{"cancel", "close"} {
		t.Run(end, func(t *testing.T) {
			s := e.open(t, "")
			s.do(reqHeaders("POST", "/o", "k-early-"+end, false))
			if end == "cancel" {
				s.cancel()
			} else {
				require.NoError(t, s.s.CloseSend())
			}
			e.waitIdle(t)
			require.Nil(t, e.entry(t, "k-early-"+end))
		})
	}
	require.Zero(t, e.store.Len())
}

func TestEnvoyMadeResponses(t *testing.T) {
	for _, c := range []struct {
		details string
		locked  bool
	}{
		// Envoy could not connect, or answered itself: the upstream never
		// saw the request.
		{"upstream_reset_before_response_started{remote_connection_failure}", false},
		{"no_healthy_upstream", false},
		{"direct_response", false},
		// The upstream may have run: outcome unknown.
		{"response_timeout", true},
		{"upstream_reset_before_response_started{remote_reset}", true},
	} {
		t.Run(c.details, func(t *testing.T) {
			e := newEnv(t)
			s := e.open(t, "")
			s.do(reqHeaders("POST", "/o", "k-env", false))
			s.do(reqBody("x", true))
			resp := s.do(withAttr(respHeaders("503", false, "content-type", "text/plain"), "response.code_details", c.details))
			require.NotNil(t, resp.GetResponseHeaders())
			s.do(respBody("upstream connect error", true)) // must not record either way
			ent := e.entry(t, "k-env")
			if !c.locked {
				require.Nil(t, ent, "released: a retry may run")
				return
			}
			require.NotNil(t, ent)
			require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark, "recorded as outcome-unknown, not as the 503")
			s.cancel()
			e.waitIdle(t)
			require.Equal(t, idempotency.MarkUnknown, e.entry(t, "k-env").Record.Mark)
		})
	}
}

func TestEnvoyMadeSuccessIsNotRecorded(t *testing.T) {
	// A response Envoy made is never recorded as the upstream's, whatever
	// its status.
	e := newEnv(t)
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/o", "k-local", false))
	s.do(reqBody("x", true))
	s.do(withAttr(respHeaders("200", true), "response.code_details", "some_filter_local_reply"))
	ent := e.entry(t, "k-local")
	require.Equal(t, idempotency.MarkUnknown, ent.Record.Mark)
}

func TestObservabilityModeGetsNoAnswer(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	obs := reqHeaders("POST", "/o", "k-obs", false)
	obs.ObservabilityMode = true
	s.send(obs)
	obsBody := reqBody("x", true)
	obsBody.ObservabilityMode = true
	s.send(obsBody)
	// The first answer on the stream belongs to the next real message.
	resp := s.do(respTrailers())
	require.NotNil(t, resp.GetResponseTrailers())
	require.Nil(t, e.entry(t, "k-obs"), "observed messages are not acted on")
}

func TestStreamStartingWithResponseHeadersContinues(t *testing.T) {
	e := newEnv(t)
	s := e.open(t, "")
	// An earlier filter sent a local reply: no request context.
	resp := s.do(respHeaders("403", false, "content-type", "text/plain"))
	require.NotNil(t, resp.GetResponseHeaders())
	require.Equal(t, extprocv3.CommonResponse_CONTINUE, resp.GetResponseHeaders().GetResponse().GetStatus())
	require.NotNil(t, s.do(respBody("denied", true)).GetResponseBody())
	e.endAll(t)
	require.Zero(t, e.store.Len())
}

// TestWaitInFlightExtendsMessageTimeout: a duplicate that may wait first
// asks Envoy for a longer message timeout, then replays the first's answer.
func TestWaitInFlightExtendsMessageTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageTimeout = 5 * time.Second })
	first := e.open(t, "wait") // WaitInFlight 2s
	first.do(reqHeaders("POST", "/w", "k-wait", false))
	// The first request acquires: it never waits, so it gets no override.
	require.NotNil(t, first.do(reqBody("x", true)).GetRequestBody())

	dup := e.open(t, "wait")
	dup.do(reqHeaders("POST", "/w", "k-wait", false))
	dup.send(reqBody("x", true))
	ov := dup.recv()
	require.Nil(t, ov.GetResponse(), "an override travels alone")
	require.NotNil(t, ov.GetOverrideMessageTimeout())
	// WaitInFlight*1.5 + 500ms, capped by MaxMessageTimeout.
	require.Equal(t, 3500*time.Millisecond, ov.GetOverrideMessageTimeout().AsDuration())

	time.Sleep(50 * time.Millisecond) // the duplicate is now waiting
	first.do(respHeaders("201", false))
	first.do(respBody("made", true))

	ir := immediateOf(t, dup.recv())
	require.EqualValues(t, 201, ir.GetStatus().GetCode())
	require.Equal(t, "made", string(ir.GetBody()))
}

func TestNoOverrideWithoutMaxMessageTimeout(t *testing.T) {
	e := newEnv(t) // MaxMessageTimeout 0: Envoy would reject an override
	s := e.open(t, "wait")
	s.do(reqHeaders("POST", "/w", "k-noov", false))
	resp := s.do(reqBody("x", true)) // do fails on an override message
	require.NotNil(t, resp.GetRequestBody())
}

func TestOverrideIsCappedByMaxMessageTimeout(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxMessageTimeout = 700 * time.Millisecond })
	first := e.open(t, "wait")
	require.NotNil(t, first.do(reqHeaders("POST", "/w", "k-cap", true)).GetRequestHeaders()) // no body: acquires at headers
	dup := e.open(t, "wait")
	dup.send(reqHeaders("POST", "/w", "k-cap", true)) // waits for the first
	ov := dup.recv()
	require.Equal(t, 700*time.Millisecond, ov.GetOverrideMessageTimeout().AsDuration())
	first.do(respHeaders("201", true))
	require.NotNil(t, dup.recv().GetImmediateResponse(), "the duplicate replays the first")
}

func TestStreamsActiveIsBalanced(t *testing.T) {
	e := newEnv(t)
	a, b := e.open(t, ""), e.open(t, "")
	a.do(reqHeaders("GET", "/", "", true))
	b.do(reqHeaders("GET", "/", "", true))
	require.EqualValues(t, 2, e.active.Load())
	a.cancel()
	require.NoError(t, b.s.CloseSend())
	e.waitIdle(t)
}

func TestNewRequiresEngineAndDefault(t *testing.T) {
	_, err := New(Options{})
	require.Error(t, err)
}

// stalledStore holds Complete until gate closes, as a store that stopped
// answering and came back.
type stalledStore struct {
	idempotency.Store
	gate chan struct{}
}

func (s *stalledStore) Complete(ctx context.Context, c idempotency.Claim, rec *idempotency.Record) error {
	select {
	case <-s.gate:
		return s.Store.Complete(ctx, c, rec)
	case <-ctx.Done():
		return fmt.Errorf("stalled: %w", ctx.Err())
	}
}

// A store that stalls while the response is recorded delays the record,
// never the answer: Envoy gets it within AnswerWithin (below its message
// timeout, where it would answer the client a bare 504), the key stays
// claimed (a duplicate gets 409), and the record lands once the store
// answers again; Wait waits for it.
func TestStalledStoreDelaysTheRecordNotTheAnswer(t *testing.T) {
	var st *stalledStore
	var buffered atomic.Int64
	e := newEnv(t, func(o *Options) {
		st = &stalledStore{Store: memstore.New(memstore.Options{}), gate: make(chan struct{})}
		o.Engine = idempotency.New(st, idempotency.WithStoreTimeout(100*time.Millisecond))
		o.AnswerWithin = 50 * time.Millisecond
		o.Buffered = func(n int64) { buffered.Add(n) }
	})
	s := e.open(t, "")
	s.do(reqHeaders("POST", "/o", "k-stall", false))
	s.do(reqBody("x", true))
	s.do(respHeaders("201", false))
	start := time.Now()
	require.NotNil(t, s.do(respBody("done", true)).GetResponseBody())
	require.Less(t, time.Since(start), time.Second, "answered long before the store came back")
	require.Positive(t, buffered.Load(), "the body being saved still counts against the budget")

	dup := e.open(t, "")
	dup.do(reqHeaders("POST", "/o", "k-stall", false))
	require.Equal(t, "request-in-progress", requireProblem(t, dup.do(reqBody("x", true)), 409), "claimed while the record is pending")

	close(st.gate)
	e.srv.Wait()
	require.Eventually(t, func() bool { return buffered.Load() == 0 }, 5*time.Second, 5*time.Millisecond, "given back once saved")
	ent, err := st.Get(context.Background(), idempotency.StorageKey("", "k-stall"))
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, ent.State)
	require.Equal(t, "done", string(ent.Record.Body))
}
