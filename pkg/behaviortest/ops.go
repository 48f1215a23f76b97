package behaviortest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// RunOps runs the rows of the behaviour table that a front end without
// HTTP can express (a gRPC interceptor, a function wrapper) against target.
// The rows are written once, in terms of OpCall and OpResult; each front
// end's test maps them onto its transport. Rows a transport cannot express
// are skipped, saying why.
func RunOps(t *testing.T, target OpTarget) {
	if target.Do == nil || target.Upstream == nil {
		t.Fatal("behaviortest: OpTarget needs Do and Upstream")
	}
	s := &opSuite{target: target, prefix: runPrefix("op")}
	runRows(t, s,
		row{"MaxLengthKey", s.maxLengthKey},
		row{"ErrorOutcomeStored", s.errorStored},
		row{"ErrorsNotStored", s.errorsNotStored},
		row{"UncertainErrorKeepsKey", s.uncertainKeepsKey},
	)
}

// OpTarget is a front end without HTTP under test.
type OpTarget struct {
	// Do sends c through the front end, whose handler must call
	// Upstream.Serve with c.Request. It returns the outcome; a transport
	// failure (the front end unreachable) is an error.
	Do func(ctx context.Context, c OpCall) (OpResult, error)
	// Upstream is the handler behind the front end.
	Upstream *OpUpstream
	// StoreOutage, as in Target, makes the store unreachable.
	StoreOutage func(t testing.TB) (restore func())
	// MalformedKeys are keys the transport's key syntax rejects, beyond
	// the universal ones (over 255 bytes).
	MalformedKeys []string
	// MultipleKeys: the transport can send a key twice (metadata), which
	// must be rejected.
	MultipleKeys bool
	// StoresErrors: the transport has error outcomes that are stored and
	// replayed (gRPC statuses such as NotFound); plain functions return Go
	// errors, which never are.
	StoresErrors bool
	// RequestCap: the front end applies Policy.MaxRequestBody to the
	// request (gRPC: the message size).
	RequestCap bool
}

// OpCall is one call of the suite.
type OpCall struct {
	// Route selects the policy, as the path prefixes of Routes() do:
	// "required", "optional", "wait", "small", "lease", or "plain" (no
	// policy). PolicyFor maps it.
	Route string
	// Key is the key to send; "" sends none. Keys, when set, sends
	// several.
	Key  string
	Keys []string
	// Scope names the caller ("" is anonymous).
	Scope string
	// Request is what the handler receives and the fingerprint covers.
	Request OpRequest
}

// OpRequest tells the handler what to do. Every field is part of the
// request, so of its fingerprint.
type OpRequest struct {
	Tag   string
	Input string
	// Sleep before answering (ignoring cancellation, as a real handler may).
	Sleep time.Duration
	// Fail makes the handler fail: one of the Fail* constants.
	Fail string
	// Size pads the reply to at least this many bytes.
	Size int
}

// What OpRequest.Fail asks of the handler; the front end's test maps the
// errors Serve returns to its transport.
const (
	// FailClient: an error that is an outcome (gRPC NotFound): stored.
	FailClient = "client"
	// FailServer: a failure (gRPC Internal, a Go error): not stored, the
	// key is released.
	FailServer = "server"
	// FailUncertain: a failure after which the effect may have happened (a
	// timeout): never run again (outcome unknown).
	FailUncertain = "uncertain"
)

// Errors OpUpstream.Serve returns for OpRequest.Fail.
var (
	ErrOpClient    = errors.New("behaviortest: no such thing (client error)")
	ErrOpServer    = errors.New("behaviortest: database down (server error)")
	ErrOpUncertain = errors.New("behaviortest: downstream timed out (outcome uncertain)")
)

// OpReply is the handler's answer. Exec is the execution's serial number,
// so a replay is told apart from a re-run.
type OpReply struct {
	Exec  int
	Tag   string
	Input string
	Pad   string
}

// OpResult is what the caller got.
type OpResult struct {
	// Reply is the handler's answer, live or replayed.
	Reply OpReply
	// Err is the handler's error as the caller got it, rendered as text
	// (gRPC: code and message), live or replayed; "" for none.
	Err string
	// Problem is the slug of the front end's own refusal
	// (request-in-progress, key-reused, …); "" when the handler answered.
	Problem string
	// RetryAfter comes with a refusal that may be retried.
	RetryAfter time.Duration
	// Replayed says the answer came from the store.
	Replayed bool
	// Meta is transport metadata of the answer that a replay must repeat
	// (gRPC header and trailer metadata, without the replay marker).
	Meta map[string][]string
}

// OpUpstream is the handler behind a front end without HTTP. It counts
// executions like Upstream (whose counters it shares).
type OpUpstream struct{ *Upstream }

// NewOpUpstream returns a handler with no executions counted.
func NewOpUpstream() *OpUpstream { return &OpUpstream{NewUpstream()} }

// Serve executes r.
func (u *OpUpstream) Serve(_ context.Context, r OpRequest) (OpReply, error) {
	exec := u.start(strings.Clone(r.Tag), "")
	defer u.end(r.Tag)
	time.Sleep(min(r.Sleep, maxSleep))
	switch r.Fail {
	case FailClient:
		return OpReply{}, ErrOpClient
	case FailServer:
		return OpReply{}, ErrOpServer
	case FailUncertain:
		return OpReply{}, ErrOpUncertain
	}
	reply := OpReply{Exec: exec, Tag: r.Tag, Input: r.Input}
	if n := min(r.Size, maxSize); n > 0 {
		reply.Pad = strings.Repeat("0123456789abcdef", n/16+1)[:n]
	}
	return reply, nil
}

// PolicyFor returns the policy of an OpCall.Route among routes (Routes()),
// or nil for "plain" and unknown routes.
func PolicyFor(routes []Route, route string) *idempotency.Policy {
	return Lookup(routes, "/"+route+"/")
}

type opSuite struct {
	target OpTarget
	prefix string
}

func (s *opSuite) id(name string) string { return s.prefix + "." + name }

func (s *opSuite) do(c OpCall) (OpResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	r, err := s.target.Do(ctx, c)
	if err != nil {
		return r, fmt.Errorf("call %s key %q: %w", c.Route, c.Key, err)
	}
	return r, nil
}

func (s *opSuite) send(t testing.TB, c OpCall) OpResult {
	t.Helper()
	r, err := s.do(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (s *opSuite) sendAsync(c OpCall) <-chan outcome[OpResult] {
	return async(func() (OpResult, error) { return s.do(c) })
}

// keyed is a call on route with key, tagged with key.
func keyed(route, key, input string) OpCall {
	return OpCall{Route: route, Key: key, Request: OpRequest{Tag: key, Input: input}}
}
