package grpcmw_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/behaviortest"
	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// BenchmarkOverhead: unary calls over a loopback connection to a server
// without the interceptor, then to one with it over the memory store,
// miss and replay, in one run. Unlike the HTTP front ends' benchmarks this
// includes the network path, which is what a gRPC call costs.
func BenchmarkOverhead(b *testing.B) {
	store := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = store.Close() })
	idem, err := grpcmw.UnaryServerInterceptor(store)
	if err != nil {
		b.Fatal(err)
	}
	req, _ := structpb.NewStruct(map[string]any{"item": "book", "quantity": 1, "amount": 1250, "currency": "EUR"})
	behaviortest.BenchOverheadFunc(b, serveGRPC(b, nil, req), serveGRPC(b, idem, req))
}

func serveGRPC(b *testing.B, icpt grpc.UnaryServerInterceptor, req *structpb.Struct) behaviortest.BenchServe {
	var opts []grpc.ServerOption
	if icpt != nil {
		opts = append(opts, grpc.UnaryInterceptor(icpt))
	}
	srv := grpc.NewServer(opts...)
	handler := func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(structpb.Struct)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(context.Context, any) (any, error) {
			return structpb.NewStruct(map[string]any{"id": 42, "status": "created", "amount": 1250, "currency": "EUR"})
		}
		if icpt == nil {
			return h(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/shop.Orders/Create"}, h)
	}
	srv.RegisterService(&grpc.ServiceDesc{ServiceName: "shop.Orders", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Create", Handler: handler}}}, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	reply := new(structpb.Struct)
	// Connect before measuring: the first call dials.
	if err := conn.Invoke(context.Background(), "/shop.Orders/Create", req, reply); err != nil {
		b.Fatal(err)
	}
	return func(key string) bool {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", key)
		return conn.Invoke(ctx, "/shop.Orders/Create", req, reply) == nil
	}
}
