package grpcmw_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
)

// opsService is a hand-written gRPC service whose methods are the routes of
// behaviortest.Routes; requests and replies are google.protobuf.Struct, so
// no generated code is needed and replays are decoded through the global
// type registry, as for any generated message.
const opsService = "gopotency.behaviortest.v1.Ops"

var opRoutes = []string{"required", "optional", "wait", "small", "lease", "plain"}

func opsDesc(up *behaviortest.OpUpstream) *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: opsService, HandlerType: (*any)(nil)}
	for _, route := range opRoutes {
		full := "/" + opsService + "/" + route
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: route,
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(structpb.Struct)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) { return serveOp(ctx, up, req.(*structpb.Struct)) }
				if icpt == nil {
					return h(ctx, in)
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: full}, h)
			}})
	}
	return desc
}

// serveOp runs the suite's handler, sets header and trailer metadata, and
// maps its errors: a client error is NotFound (stored), a server error
// Internal (not stored), an uncertain one DeadlineExceeded (key locked).
func serveOp(ctx context.Context, up *behaviortest.OpUpstream, in *structpb.Struct) (*structpb.Struct, error) {
	f := in.GetFields()
	req := behaviortest.OpRequest{Tag: f["tag"].GetStringValue(), Input: f["input"].GetStringValue(), Fail: f["fail"].GetStringValue(),
		Sleep: time.Duration(f["sleep_ms"].GetNumberValue()) * time.Millisecond, Size: int(f["size"].GetNumberValue())}
	reply, err := up.Serve(ctx, req)
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-exec", "yes", "x-multi", "a", "x-multi", "b", "x-bin-bin", "\x00\xff"))
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-served", "ops"))
	switch {
	case errors.Is(err, behaviortest.ErrOpClient):
		return nil, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, behaviortest.ErrOpUncertain):
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	return structpb.NewStruct(map[string]any{"exec": reply.Exec, "tag": reply.Tag, "input": reply.Input, "pad": reply.Pad})
}

// serveOps serves the ops service through icpt on loopback and returns a
// client connection to it.
func serveOps(t testing.TB, up *behaviortest.OpUpstream, icpt grpc.UnaryServerInterceptor, client ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(grpc.UnaryInterceptor(icpt))
	srv.RegisterService(opsDesc(up), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), append(client, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// callOp sends c over conn and reads its outcome as the suite sees it.
func callOp(ctx context.Context, conn *grpc.ClientConn, c behaviortest.OpCall) (behaviortest.OpResult, error) {
	var res behaviortest.OpResult
	in, err := structpb.NewStruct(map[string]any{"tag": c.Request.Tag, "input": c.Request.Input, "fail": c.Request.Fail,
		"sleep_ms": c.Request.Sleep.Milliseconds(), "size": c.Request.Size})
	if err != nil {
		return res, err
	}
	md := metadata.MD{}
	if c.Key != "" {
		md.Append("idempotency-key", c.Key)
	}
	for _, k := range c.Keys {
		md.Append("idempotency-key", k)
	}
	if c.Scope != "" {
		md.Append("authorization", "Bearer "+c.Scope)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	out := new(structpb.Struct)
	var header, trailer metadata.MD
	err = conn.Invoke(ctx, "/"+opsService+"/"+c.Route, in, out, grpc.Header(&header), grpc.Trailer(&trailer))
	res.Replayed = len(header.Get(grpcmw.ReplayedKey)) > 0 || len(trailer.Get(grpcmw.ReplayedKey)) > 0
	res.Meta = map[string][]string{}
	for prefix, m := range map[string]metadata.MD{"header:": header, "trailer:": trailer} {
		for k, vs := range m {
			if k != grpcmw.ReplayedKey && k != "content-type" {
				res.Meta[prefix+k] = vs
			}
		}
	}
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || st.Code() == codes.Unknown && strings.Contains(st.Message(), "connection") {
			return res, err
		}
		if typ := grpcmw.ProblemType(err); typ != "" {
			res.Problem = typ[strings.LastIndex(typ, "/")+1:]
			res.RetryAfter = grpcmw.RetryDelay(err)
			return res, nil
		}
		res.Err = st.Code().String() + ": " + st.Message()
		return res, nil
	}
	f := out.GetFields()
	res.Reply = behaviortest.OpReply{Exec: int(f["exec"].GetNumberValue()), Tag: f["tag"].GetStringValue(),
		Input: f["input"].GetStringValue(), Pad: f["pad"].GetStringValue()}
	return res, nil
}
