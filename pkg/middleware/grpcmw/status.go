package grpcmw

import (
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every refusal the
// interceptor sends; its metadata "type" is the problem type URI.
const ErrorDomain = "gopotency.dev"

// problemCodes overrides the mapping by HTTP status for problems whose
// status alone would mislead a gRPC client.
var problemCodes = map[string]codes.Code{
	// 413 means "retry with less" for a request; for a tombstone, retrying
	// can never succeed.
	"response-too-large": codes.FailedPrecondition,
}

// CodeOf maps a problem of the engine's one table to a gRPC code:
//
//	400 key-missing, key-malformed        InvalidArgument
//	409 request-in-progress               Aborted (with RetryInfo)
//	413 request-too-large                 ResourceExhausted (as gRPC's own message limit)
//	413 response-too-large                FailedPrecondition (ran once; never again)
//	422 key-reused                        AlreadyExists
//	424 outcome-unknown, response-incomplete, response-evicted  FailedPrecondition
//	503 store-unavailable, server-busy    Unavailable (with RetryInfo)
//	500 internal                          Internal
//
// Problems added later map by their HTTP status (HTTPToCode).
func CodeOf(p *idempotency.Problem) codes.Code {
	if c, ok := problemCodes[p.Slug()]; ok {
		return c
	}
	return HTTPToCode(p.Status)
}

// codeStatuses pairs gRPC codes with HTTP statuses, the usual gateway
// mapping, read both ways: a code maps to the status of its first pair, a
// status to the code of its first pair.
var codeStatuses = []struct {
	code   codes.Code
	status int
}{
	{codes.OK, http.StatusOK},
	{codes.InvalidArgument, http.StatusBadRequest},
	{codes.FailedPrecondition, http.StatusBadRequest},
	{codes.OutOfRange, http.StatusBadRequest},
	{codes.Unauthenticated, http.StatusUnauthorized},
	{codes.PermissionDenied, http.StatusForbidden},
	{codes.NotFound, http.StatusNotFound},
	{codes.Aborted, http.StatusConflict},
	{codes.AlreadyExists, http.StatusConflict},
	{codes.AlreadyExists, http.StatusUnprocessableEntity},
	{codes.ResourceExhausted, http.StatusTooManyRequests},
	{codes.ResourceExhausted, http.StatusRequestEntityTooLarge},
	{codes.Canceled, 499},
	{codes.Unimplemented, http.StatusNotImplemented},
	{codes.Unavailable, http.StatusServiceUnavailable},
	{codes.DeadlineExceeded, http.StatusGatewayTimeout},
}

// HTTPToCode maps an HTTP status to the gRPC code of the same meaning
// (the inverse of CodeToHTTP where one exists); another 4xx is
// FailedPrecondition, anything else Internal.
func HTTPToCode(s int) codes.Code {
	for _, p := range codeStatuses {
		if p.status == s {
			return p.code
		}
	}
	if s >= 400 && s < 500 {
		return codes.FailedPrecondition
	}
	return codes.Internal
}

// GaveUp reports whether a handler's status says it gave up part way
// (Canceled, DeadlineExceeded): it may have had its effect, so the
// outcome is unknown, recorded as such and never run again, whatever the
// policy stores. The interceptor and the ext_proc server both judge by it.
func GaveUp(c codes.Code) bool { return c == codes.Canceled || c == codes.DeadlineExceeded }

// CodeToHTTP maps a gRPC code to the HTTP status the policy's DoNotStore
// list is matched against, so gRPC answers are stored by the same rules as
// HTTP ones: NotFound (404) or FailedPrecondition (400) replay, Internal
// (500), Unavailable (503) and ResourceExhausted (429) release the key.
func CodeToHTTP(c codes.Code) int {
	for _, p := range codeStatuses {
		if p.code == c {
			return p.status
		}
	}
	return http.StatusInternalServerError
}

// StatusOf renders a problem as a gRPC status: CodeOf's code, the title and
// detail as message, a google.rpc.ErrorInfo (domain ErrorDomain, reason the
// slug in upper snake case, metadata "type" the problem type URI) and, for
// retryable problems, a google.rpc.RetryInfo with the delay.
func StatusOf(p *idempotency.Problem) *status.Status {
	msg := p.Title
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	st := status.New(CodeOf(p), msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   strings.ToUpper(strings.ReplaceAll(p.Slug(), "-", "_")),
		Domain:   ErrorDomain,
		Metadata: map[string]string{"type": p.Type},
	}}
	if p.RetryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(p.RetryAfter)})
	}
	if with, err := st.WithDetails(details...); err == nil {
		return with
	}
	return st
}

// ProblemType returns the problem type URI an error from the interceptor
// carries, or "" when err is not one of its refusals (the handler's own
// error, a transport failure).
func ProblemType(err error) string {
	info, _ := errorInfo(err)
	if info == nil {
		return ""
	}
	return info.GetMetadata()["type"]
}

func errorInfo(err error) (*errdetails.ErrorInfo, *errdetails.RetryInfo) {
	st, ok := status.FromError(err)
	if !ok {
		return nil, nil
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				info = d
			}
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	return info, retry
}

// RetryDelay returns the google.rpc.RetryInfo delay an error carries, or 0.
func RetryDelay(err error) time.Duration {
	_, retry := errorInfo(err)
	return retry.GetRetryDelay().AsDuration()
}
