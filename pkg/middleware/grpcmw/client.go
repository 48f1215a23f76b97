package grpcmw

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ClientOption configures UnaryClientInterceptor.
type ClientOption func(*client)

// WithMaxAttempts bounds the tries of one call, the first included
// (default 4). 1 attaches keys and never retries.
func WithMaxAttempts(n int) ClientOption { return func(c *client) { c.attempts = max(n, 1) } }

// WithBackoff sets the delay before the first retry and its cap; it
// doubles per retry, with jitter. A server's RetryInfo replaces the delay,
// within the cap (default 100ms, 2s).
func WithBackoff(first, limit time.Duration) ClientOption {
	return func(c *client) { c.first, c.limit = first, limit }
}

// WithMethods chooses the methods that get keys (default: every unary
// method). Keep reads out: their answers need no storing.
func WithMethods(f func(fullMethod string) bool) ClientOption {
	return func(c *client) { c.methods = f }
}

// WithKeyMetadata names the metadata carrying the key (default
// KeyMetadata, the server's default policy's KeyHeader).
func WithKeyMetadata(name string) ClientOption { return func(c *client) { c.keyName = name } }

// WithKeyFunc replaces the key generator (default: 128 random bits,
// base64url).
func WithKeyFunc(f func() string) ClientOption { return func(c *client) { c.newKey = f } }

type client struct {
	attempts     int
	first, limit time.Duration
	methods      func(string) bool
	keyName      string
	newKey       func() string
}

// UnaryClientInterceptor attaches an idempotency key to every call that
// does not carry one (set your own with metadata.AppendToOutgoingContext to
// tie a call to a business operation) and retries the call with the same
// key while the answer says nothing ran to completion yet: Unavailable (a
// transport failure, or the server's store down) and the server's
// request-in-progress refusal (Aborted with GoPotency's ErrorInfo). Because
// the key is the same, a retry after a call that did run gets its stored
// answer, never a second execution. Other errors, replays and a done
// context end the call at once.
func UnaryClientInterceptor(opts ...ClientOption) grpc.UnaryClientInterceptor {
	c := &client{attempts: 4, first: 100 * time.Millisecond, limit: 2 * time.Second,
		keyName: KeyMetadata, newKey: randomKey}
	for _, o := range opts {
		o(c)
	}
	return c.intercept
}

func randomKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (c *client) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if c.methods != nil && !c.methods(method) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(c.keyName)) == 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, c.keyName, c.newKey())
	}
	delay := c.first
	for attempt := 1; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		wait, retry := c.retryable(err, delay)
		if !retry || attempt >= c.attempts {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, c.limit)
	}
}

// retryable says whether err may be retried with the same key, and after
// how long: the server's RetryInfo, or delay with jitter.
func (c *client) retryable(err error, delay time.Duration) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	info, retry := errorInfo(err)
	switch status.Code(err) {
	case codes.Unavailable:
	case codes.Aborted:
		if info == nil || info.GetReason() != "REQUEST_IN_PROGRESS" {
			return 0, false // the application's own Aborted: its meaning is unknown here
		}
	default:
		return 0, false
	}
	if d := retry.GetRetryDelay(); d != nil && d.AsDuration() > 0 {
		return min(d.AsDuration(), c.limit), true
	}
	return delay/2 + rand.N(delay/2+1), true
}
