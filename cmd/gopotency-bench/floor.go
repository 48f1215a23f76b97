package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// floorKey is the header (and, body-first, the attribute) the floor reads.
const (
	floorKey     = "idempotency-key"
	floorKeyAttr = "request.headers['idempotency-key']"
	attrNS       = "envoy.filters.http.ext_proc"
)

// floor is the do-nothing ext_proc server: it takes the protocol steps
// gopotency takes for the benchmark's requests (the same messages, the
// same mode overrides, a replay answered with a stored-looking
// ImmediateResponse) and nothing else: no store, no fingerprint, no
// policy. Whether a request is a replay it reads from the key the
// benchmark chose. Its CPU is the floor any ext_proc server pays behind
// the same Envoy.
type floor struct {
	extprocv3.UnimplementedExternalProcessorServer
}

var (
	floorBuffer = &filterv3.ProcessingMode{
		RequestBodyMode:     filterv3.ProcessingMode_BUFFERED,
		ResponseHeaderMode:  filterv3.ProcessingMode_SEND,
		ResponseBodyMode:    filterv3.ProcessingMode_STREAMED,
		ResponseTrailerMode: filterv3.ProcessingMode_SEND,
	}
	floorPass = &filterv3.ProcessingMode{
		ResponseHeaderMode:  filterv3.ProcessingMode_SKIP,
		RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
		ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
	floorReplayHeaders = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")}, Append: wrapperspb.Bool(false)},
		{Header: &corev3.HeaderValue{Key: "location", RawValue: []byte("/orders/ord_5f2c9a7e1b3d4c8f")}, Append: wrapperspb.Bool(false)},
		{Header: &corev3.HeaderValue{Key: strings.ToLower(idempotency.ReplayedHeader), RawValue: []byte("true")}, Append: wrapperspb.Bool(false)},
	}}
)

func (floor) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	key := ""
	for {
		req, err := s.Recv()
		if err != nil {
			return nil // EOF or Envoy's reset: a normal end
		}
		var resp *extprocv3.ProcessingResponse
		switch m := req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			for _, h := range m.RequestHeaders.GetHeaders().GetHeaders() {
				if h.GetKey() == floorKey {
					key = string(h.GetRawValue())
				}
			}
			mode := floorPass
			if key != "" {
				mode = floorBuffer // the fingerprint needs the body
			}
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}, ModeOverride: mode}
			if key != "" && m.RequestHeaders.GetEndOfStream() {
				resp = floorDecide(key, false)
			}
		case *extprocv3.ProcessingRequest_RequestBody:
			if key == "" { // body-first: the key comes as an attribute
				key = req.GetAttributes()[attrNS].GetFields()[floorKeyAttr].GetStringValue()
			}
			resp = floorDecide(key, true)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		default:
			return errors.New("floor: unknown message")
		}
		if err := s.Send(resp); err != nil {
			return nil
		}
	}
}

// floorDecide answers the phase that judges a keyed request: a replay key
// gets the stored answer, any other goes on (atBody: the request body
// phase, else the request headers).
func floorDecide(key string, atBody bool) *extprocv3.ProcessingResponse {
	if strings.Contains(key, replayMarker) {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Created}, Headers: floorReplayHeaders, Body: upstreamBody, Details: "floor_replay"}}}
	}
	if atBody {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}, ModeOverride: floorBuffer}
}

// serveFloor runs the floor with gRPC health (Envoy health-checks its
// cluster) and the server options gopotency uses.
func serveFloor(ctx context.Context, addr string) error {
	network, where := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		network, where = "unix", p
	}
	ln, err := net.Listen(network, where)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(2<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	extprocv3.RegisterExternalProcessorServer(gs, floor{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { <-ctx.Done(); gs.Stop() }()
	bound := ln.Addr().String()
	if network == "unix" {
		bound = "unix://" + bound
	}
	ready(bound)
	if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
