package extproc

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/idempotency"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// fuzzInput decodes fuzz bytes; reads past the end give zeros.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) more() bool { return len(in.b) > 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	c := in.b[0]
	in.b = in.b[1:]
	return c
}

// str reads a length byte (at most 63) and that many bytes.
func (in *fuzzInput) str() string {
	n := min(int(in.byte()&63), len(in.b))
	s := string(in.b[:n])
	in.b = in.b[n:]
	return s
}

func (in *fuzzInput) pick(choices ...string) string {
	i := int(in.byte())
	if i >= len(choices) {
		return in.str()
	}
	return choices[i]
}

var fuzzPolicies = []string{"", "headers", "small", "required", "wait", "auto", "no-such-policy"}

// message builds one ProcessingRequest. The op byte picks the oneof
// (6: none set) and its high bit sets observability_mode.
func (in *fuzzInput) message() *extprocv3.ProcessingRequest {
	op := in.byte()
	flags := in.byte()
	eos := flags&1 != 0
	req := &extprocv3.ProcessingRequest{ObservabilityMode: op&0x80 != 0}
	headers := func(kv ...string) *corev3.HeaderMap {
		m := &corev3.HeaderMap{}
		for i := 0; i+1 < len(kv); i += 2 {
			h := &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])}
			if flags&2 != 0 { // older proxies send value
				h.RawValue, h.Value = nil, kv[i+1]
			}
			m.Headers = append(m.Headers, h)
		}
		return m
	}
	switch op & 7 {
	case 0:
		kv := []string{":method", in.pick("POST", "GET", "PATCH", "post"), ":path", in.pick("/orders", "/orders?a=1", "")}
		switch in.byte() % 6 {
		case 1:
			kv = append(kv, "idempotency-key", "k1")
		case 2:
			kv = append(kv, "idempotency-key", `"k2"`)
		case 3:
			kv = append(kv, "idempotency-key", in.str())
		case 4:
			kv = append(kv, "idempotency-key", "k1", "idempotency-key", "k2")
		case 5:
			kv = append(kv, "Idempotency-Key", "k1") // Envoy lower-cases; others may not
		}
		kv = append(kv, in.pick("authorization", "content-type", "x-extra"), in.str())
		req.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(kv...), EndOfStream: eos}}
	case 1:
		req.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(in.pick(`{"a":1}`, `{"a":2}`, "")), EndOfStream: eos}}
	case 2:
		req.Request = &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{Trailers: headers("x-t", in.str())}}
	case 3:
		kv := []string{":status", in.pick("200", "201", "500", "429", "abc", "")}
		kv = append(kv, in.pick("set-cookie", "content-type", "connection", ":x"), in.str(), "x-rep", "1", "x-rep", "2")
		req.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(kv...), EndOfStream: eos}}
	case 4:
		req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(in.pick("ok", "0123456789", "")), EndOfStream: eos}}
	case 5:
		req.Request = &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}
	case 6: // no oneof set
	case 7:
		req.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(in.str()), EndOfStream: eos}}
	}
	if flags&4 != 0 {
		fields := map[string]*structpb.Value{
			"response.code_details": structpb.NewStringValue(in.pick("via_upstream", "response_timeout", "upstream_reset_before_response_started{remote_connection_failure}")),
			"source.principal":      structpb.NewStringValue(in.str()),
		}
		if flags&8 != 0 { // attributes of other kinds
			fields["response.code_details"] = structpb.NewNumberValue(503)
			fields["source.principal"] = &structpb.Value{}
		}
		req.Attributes = map[string]*structpb.Struct{attrNamespace: {Fields: fields}}
	}
	return req
}

// fuzzServer builds a Server over a fresh memstore that counts leases won
// and settled, so a lease the processor forgets is caught.
func fuzzServer(t *testing.T) (*Server, *memstore.Store, *atomic.Int64, *atomic.Int64) {
	st := memstore.New(memstore.Options{})
	var won, settled atomic.Int64
	eng := idempotency.New(st, idempotency.WithHooks(idempotency.Hooks{
		Decided: func(o string) {
			if o == "proceed" {
				won.Add(1)
			}
		},
		Settled: func(string, int) { settled.Add(1) },
	}))
	pols := testPolicies()
	pols["wait"].WaitInFlight = 5 * time.Millisecond
	pols["auto"] = func() *idempotency.Policy {
		p := idempotency.DefaultPolicy()
		p.AutoKey = &idempotency.AutoKey{JSONFields: []string{"a"}}
		return &p
	}()
	def := idempotency.DefaultPolicy()
	srv, err := New(Options{Engine: eng, Default: &def, Policies: pols, MaxMessageTimeout: time.Second})
	require.NoError(t, err)
	return srv, st, &won, &settled
}

// FuzzProcess feeds arbitrary message sequences to one stream's processor.
// Every message must get exactly one answer of the matching type (none in
// observability mode), and every lease won must be settled by the end.
func FuzzProcess(f *testing.F) {
	// policy, then (op, flags, fields...) per message; see message().
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 3, 0, 0, 1, 0, 4, 1, 0})          // keyed POST, body, response
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 1, 0, 0, 5, 0})                   // headers-only, trailers
	f.Add([]byte{2, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 3, 0, 0, 1, 0, 4, 0, 1, 4, 1, 1}) // small cap: tombstone
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 3, 4, 2, 0, 0, 1, 1, 1})          // Envoy-made, then body again
	f.Add([]byte{4, 0, 1, 0, 0, 1, 0, 0, 3, 4, 1, 1, 1, 1, 1})                      // wait policy, headers eos
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0})                      // repeated request_headers (headers-only: both acquire)
	f.Add([]byte{6, 0x80, 0, 0, 0, 1, 0, 0, 6, 0, 3, 0})                            // unknown policy, observability, empty oneof
	f.Add([]byte{5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0})                                  // automatic key from JSON
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, st, won, settled := fuzzServer(t)
		defer func() { _ = st.Close() }()
		in := &fuzzInput{b: data}
		ctx := context.Background()
		if name := fuzzPolicies[int(in.byte())%len(fuzzPolicies)]; name != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(DefaultPolicyHeader, name))
		}
		var extra []*extprocv3.ProcessingResponse
		p := &processor{s: srv, ctx: ctx, log: srv.o.Logger, send: func(r *extprocv3.ProcessingResponse) error {
			extra = append(extra, r)
			return nil
		}}
		var pending []*extprocv3.ProcessingRequest // messages awaiting an answer, in order
	messages:
		for i := 0; i < 12 && in.more(); i++ {
			req := in.message()
			extra = extra[:0]
			answers, err := p.handle(req)
			for _, ov := range extra { // only timeout overrides go out of band
				require.Nil(t, ov.GetResponse())
				d := ov.GetOverrideMessageTimeout().AsDuration()
				require.True(t, d > 0 && d <= time.Second, "override %v", d)
			}
			switch {
			case req.GetObservabilityMode():
				require.NoError(t, err)
				require.Empty(t, answers, "observability mode gets no answer")
				continue
			case req.GetRequest() == nil:
				require.Error(t, err)
				break messages // the server ends the stream
			}
			require.NoError(t, err)
			pending = append(pending, req)
			// Answers come in order, each of the type of the oldest
			// unanswered message; an immediate response ends the request.
			for _, resp := range answers {
				require.NotEmpty(t, pending, "an answer to no message")
				requireMatches(t, pending[0], resp)
				pending = pending[1:]
				if ir := resp.GetImmediateResponse(); ir != nil {
					require.GreaterOrEqual(t, int32(ir.GetStatus().GetCode()), int32(200))
					for _, o := range ir.GetHeaders().GetSetHeaders() {
						require.Empty(t, o.GetHeader().GetValue())
						require.NotNil(t, o.GetAppend())
					}
					break messages
				}
			}
			if len(pending) > 0 {
				require.Equal(t, collecting, p.stage, "answers are held only while the request body is collected")
			}
		}
		p.finish()
		require.Equal(t, won.Load(), settled.Load(), "a lease was won but never settled (its renewal would run forever)")
	})
}
