// Package guard is the toolkit the GoPotency middleware are built from,
// exported so that a front end for another framework takes a few dozen
// lines. It runs the engine of package idempotency for one request,
// records what the handler sends, replays stored answers and settles the
// lease on every ending (answer, panic, hijack, departed client), exactly
// as the net/http, Gin, Echo and Fiber middleware do (the gRPC
// interceptor and package idempotent run the engine without HTTP).
//
// An adapter does four things:
//
//  1. Build a Guard once: guard.New(store, guard.Config[C]{...}), where C
//     is the framework's per-request value.
//  2. Per request, describe it as a Request (HTTPRequest does it for a
//     *http.Request) and give a Responder that sends replays and refusals
//     (HTTPResponder wraps an http.ResponseWriter).
//  3. Call Serve with two callbacks: pass runs the handler untouched; run
//     runs it with the response recorded into a Recorder.
//  4. In run, make the handler's response reach the Recorder: wrap the
//     http.ResponseWriter in a Writer (and call Finish after the handler),
//     or, for a framework that buffers the response (fasthttp), call
//     rec.Head and rec.Body with what it holds once the handler returns.
//
// Example (the whole net/http middleware, without options) shows the
// shape; docs/middleware.md walks through a framework of one's own.
package guard
