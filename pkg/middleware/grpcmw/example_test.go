package grpcmw_test

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gopotency/gopotency/pkg/middleware/grpcmw"
	"github.com/gopotency/gopotency/pkg/store/memstore"
)

// createOrder stands for a generated service method; any proto messages
// work (the interceptor stores the reply's type name and decodes replays
// through protoregistry).
func createOrder(orders *int) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(structpb.Struct)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			*orders++
			return structpb.NewStruct(map[string]any{"order": *orders})
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/shop.Orders/Create"}, h)
	}
}

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	idem, err := grpcmw.UnaryServerInterceptor(store) // key from "idempotency-key" metadata
	if err != nil {
		panic(err)
	}
	orders := 0
	srv := grpc.NewServer(grpc.UnaryInterceptor(idem))
	srv.RegisterService(&grpc.ServiceDesc{ServiceName: "shop.Orders", HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Create", Handler: createOrder(&orders)}}}, nil)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(grpcmw.UnaryClientInterceptor())) // keys for calls without one, safe retries
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	ctx := metadata.AppendToOutgoingContext(context.Background(), "idempotency-key", "order-book-1")
	for range 2 {
		var header metadata.MD
		reply := new(structpb.Struct)
		if err := conn.Invoke(ctx, "/shop.Orders/Create", &structpb.Struct{}, reply, grpc.Header(&header)); err != nil {
			panic(err)
		}
		fmt.Printf("order %v replayed=%v\n", reply.GetFields()["order"].GetNumberValue(), header.Get(grpcmw.ReplayedKey))
	}
	fmt.Println("orders created:", orders)
	// Output:
	// order 1 replayed=[]
	// order 1 replayed=[true]
	// orders created: 1
}
