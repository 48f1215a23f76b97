package grpcmw_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// Every problem of the table maps to the documented code, with an
// ErrorInfo naming its type and, when a retry may succeed, a RetryInfo.
func TestStatusOfProblems(t *testing.T) {
	for err, want := range map[error]codes.Code{
		idempotency.ErrKeyMissing:                                  codes.InvalidArgument,
		fmt.Errorf("%w: empty", idempotency.ErrKeyMalformed):       codes.InvalidArgument,
		idempotency.ErrInFlight:                                    codes.Aborted,
		idempotency.ErrMismatch:                                    codes.AlreadyExists,
		idempotency.ErrRecordTooLarge:                              codes.FailedPrecondition,
		fmt.Errorf("%w: big", idempotency.ErrRequestTooLarge):      codes.ResourceExhausted,
		fmt.Errorf("acquire: %w", idempotency.ErrStoreUnavailable): codes.Unavailable,
		fmt.Errorf("something else"):                               codes.Internal,
	} {
		p := idempotency.ProblemFor(err)
		if err == idempotency.ErrInFlight {
			p.RetryAfter = 2 * time.Second
		}
		st := grpcmw.StatusOf(p)
		if st.Code() != want {
			t.Errorf("%s: code %v, want %v", p.Slug(), st.Code(), want)
		}
		if got := grpcmw.ProblemType(st.Err()); got != p.Type {
			t.Errorf("%s: problem type %q, want %q", p.Slug(), got, p.Type)
		}
		if got := grpcmw.RetryDelay(st.Err()); got != p.RetryAfter {
			t.Errorf("%s: retry delay %v, want %v", p.Slug(), got, p.RetryAfter)
		}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && p.Slug() == "request-in-progress" && info.GetReason() != "REQUEST_IN_PROGRESS" {
				t.Errorf("reason %q", info.GetReason())
			}
		}
	}
	// A problem type added later maps by its HTTP status.
	if c := grpcmw.CodeOf(&idempotency.Problem{Status: 424, Type: idempotency.ProblemTypeBase + "outcome-unknown"}); c != codes.FailedPrecondition {
		t.Errorf("424: %v", c)
	}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c != codes.OK && grpcmw.CodeToHTTP(c) < 400 {
			t.Errorf("%v maps to %d", c, grpcmw.CodeToHTTP(c))
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	p := idempotency.DefaultPolicy()
	p.Lease = 0
	if _, err := grpcmw.UnaryServerInterceptor(memstore.New(memstore.Options{}), grpcmw.WithPolicy(&p)); err == nil {
		t.Error("invalid policy accepted")
	}
	if _, err := grpcmw.UnaryServerInterceptor(nil); err == nil {
		t.Error("nil store accepted")
	}
}

func newServer(t *testing.T, opts ...grpcmw.Option) (*behaviortest.OpUpstream, *behaviortest.OutageStore, grpc.UnaryServerInterceptor) {
	t.Helper()
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = mem.Close() })
	store := behaviortest.NewOutageStore(mem)
	icpt, err := grpcmw.UnaryServerInterceptor(store, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return behaviortest.NewOpUpstream(), store, icpt
}

// An empty key value is malformed, not absent.
func TestEmptyKey(t *testing.T) {
	up, _, icpt := newServer(t)
	conn := serveOps(t, up, icpt)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "")
	err := conn.Invoke(ctx, "/"+opsService+"/optional", &structpb.Struct{}, new(structpb.Struct))
	if status.Code(err) != codes.InvalidArgument || grpcmw.ProblemType(err) != idempotency.ProblemTypeBase+"key-malformed" {
		t.Errorf("err %v, want key-malformed", err)
	}
}

// A panic before the header is sent releases the key (the recovery
// interceptor outside answers Internal); the retry runs.
func TestPanicReleases(t *testing.T) {
	_, _, icpt := newServer(t)
	runs := 0
	handler := func(ctx context.Context, req any) (any, error) {
		runs++
		if runs == 1 {
			panic("boom")
		}
		return &structpb.Struct{}, nil
	}
	recoverer := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = status.Error(codes.Internal, "panic")
			}
		}()
		return icpt(ctx, req, info, h)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
	info := &grpc.UnaryServerInfo{FullMethod: "/svc/Method"}
	if _, err := recoverer(ctx, &structpb.Struct{}, info, handler); status.Code(err) != codes.Internal {
		t.Fatalf("first call: %v", err)
	}
	if _, err := recoverer(ctx, &structpb.Struct{}, info, handler); err != nil || runs != 2 {
		t.Errorf("retry: %v after %d runs, want a fresh run", err, runs)
	}
}

// A handler that returns a context error, bare or wrapped, gave up as
// far as grpc-go is concerned (it sends DeadlineExceeded or Canceled):
// the outcome is unknown and the retry is refused, never run.
func TestContextErrorIsOutcomeUnknown(t *testing.T) {
	for _, cause := range []error{context.DeadlineExceeded, fmt.Errorf("charge: %w", context.Canceled)} {
		_, _, icpt := newServer(t)
		runs := 0
		handler := func(ctx context.Context, req any) (any, error) {
			runs++
			return nil, cause
		}
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("idempotency-key", "k"))
		info := &grpc.UnaryServerInfo{FullMethod: "/svc/Method"}
		if _, err := icpt(ctx, &structpb.Struct{}, info, handler); !errors.Is(err, cause) {
			t.Fatalf("%v: first call: %v", cause, err)
		}
		_, err := icpt(ctx, &structpb.Struct{}, info, handler)
		if status.Code(err) != codes.FailedPrecondition || grpcmw.ProblemType(err) != idempotency.ProblemTypeBase+"outcome-unknown" || runs != 1 {
			t.Errorf("%v: retry: %v after %d runs, want outcome-unknown and 1 run", cause, err, runs)
		}
	}
}

// The client interceptor attaches a fresh key per call (two calls, two
// executions) and keeps a key the caller set.
func TestClientAttachesKeys(t *testing.T) {
	up, _, icpt := newServer(t)
	conn := serveOps(t, up, icpt, grpc.WithUnaryInterceptor(grpcmw.UnaryClientInterceptor()))
	ctx := context.Background()
	for range 2 {
		r, err := callOp(ctx, conn, behaviortest.OpCall{Route: "required", Request: behaviortest.OpRequest{Tag: "fresh"}})
		if err != nil || r.Problem != "" || r.Replayed {
			t.Fatalf("%+v %v, want a live answer (the client attached a key)", r, err)
		}
	}
	for range 2 {
		if _, err := callOp(ctx, conn, behaviortest.OpCall{Route: "required", Key: "mine", Request: behaviortest.OpRequest{Tag: "mine"}}); err != nil {
			t.Fatal(err)
		}
	}
	if up.Executions("fresh") != 2 || up.Executions("mine") != 1 {
		t.Errorf("executions: fresh %d (want 2), mine %d (want 1)", up.Executions("fresh"), up.Executions("mine"))
	}
}

// The client retries with the same key while the first call runs (Aborted
// in progress) and while the store is down (Unavailable), and ends with the
// one execution's answer; it does not retry an application error.
func TestClientRetriesSafely(t *testing.T) {
	up, store, icpt := newServer(t)
	retrying := serveOps(t, up, icpt, grpc.WithUnaryInterceptor(grpcmw.UnaryClientInterceptor(grpcmw.WithBackoff(50*time.Millisecond, 200*time.Millisecond))))
	ctx := context.Background()
	slow := behaviortest.OpCall{Route: "optional", Key: "slow", Request: behaviortest.OpRequest{Tag: "slow", Sleep: 300 * time.Millisecond}}
	firstCh := make(chan behaviortest.OpResult, 1)
	go func() { r, _ := callOp(ctx, retrying, slow); firstCh <- r }()
	if !up.WaitStarted("slow", 1, 5*time.Second) {
		t.Fatal("first call did not start")
	}
	dup, err := callOp(ctx, retrying, slow)
	first := <-firstCh
	if err != nil || !dup.Replayed || dup.Reply != first.Reply || up.Executions("slow") != 1 {
		t.Errorf("duplicate %+v %v, first %+v, executions %d; want the replay after retrying", dup, err, first, up.Executions("slow"))
	}

	restore := store.Outage(t)
	time.AfterFunc(150*time.Millisecond, restore)
	r, err := callOp(ctx, retrying, behaviortest.OpCall{Route: "optional", Key: "outage", Request: behaviortest.OpRequest{Tag: "outage"}})
	if err != nil || r.Problem != "" || up.Executions("outage") != 1 {
		t.Errorf("through an outage: %+v %v, executions %d", r, err, up.Executions("outage"))
	}

	nf := behaviortest.OpCall{Route: "optional", Key: "nf", Request: behaviortest.OpRequest{Tag: "nf", Fail: behaviortest.FailClient}}
	if r, _ := callOp(ctx, retrying, nf); r.Err == "" || up.Executions("nf") != 1 {
		t.Errorf("application error: %+v after %d executions, want it once, not retried", r, up.Executions("nf"))
	}
}

// KeyMetadata is the default policy's key header as gRPC spells metadata
// keys, so a client setting it by name reaches a server on the default
// policy.
func TestKeyMetadataIsDefaultKeyHeader(t *testing.T) {
	if want := strings.ToLower(idempotency.DefaultPolicy().KeyHeader); grpcmw.KeyMetadata != want {
		t.Errorf("KeyMetadata %q, want %q", grpcmw.KeyMetadata, want)
	}
}
