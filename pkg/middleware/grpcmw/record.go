package grpcmw

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"maps"
	"slices"
	"strings"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/gopotency/gopotency/pkg/idempotency"
)

// What a record holds for a gRPC call: header and trailer metadata as
// record headers, and as body the reply (its message name, length-prefixed,
// then its deterministic encoding) or, for an error, the google.rpc.Status.

// trailerPrefix starts the record header names of trailer metadata. The
// grpc- prefix is reserved by gRPC, so no application metadata collides.
const trailerPrefix = "Grpc-Idempotency-Trailer-"

// response builds the record of a call's outcome; unknown means the
// outcome cannot be known (the handler gave up, or its reply cannot be
// encoded): it is recorded as unknown, never run again.
func response(st *stream, reply any, err error) (resp *idempotency.Record, unknown bool) {
	resp = &idempotency.Record{Headers: st.fields()}
	if err != nil {
		// Judged as grpc-go sends it: a plain error wrapping a context
		// error goes out as DeadlineExceeded or Canceled, not Unknown.
		sts, ok := status.FromError(err)
		if !ok {
			sts = status.FromContextError(err)
		}
		if GaveUp(sts.Code()) {
			return nil, true
		}
		body, merr := proto.Marshal(sts.Proto())
		if merr != nil {
			return nil, true
		}
		resp.Status, resp.Body = CodeToHTTP(sts.Code()), body
		return resp, false
	}
	msg, ok := reply.(proto.Message)
	if !ok {
		return nil, true
	}
	body, merr := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if merr != nil {
		return nil, true
	}
	// The reply's type name goes first, so a replay can decode it without
	// knowing the method's descriptor (and whatever the replay lists say).
	resp.Status = 200
	resp.Body = append(appendField(nil, []byte(proto.MessageName(msg))), body...)
	return resp, false
}

// replay answers from a record: its metadata, then its reply or status.
func (s *server) replay(ctx context.Context, rec *idempotency.Record) (any, error) {
	header, trailer := metadata.MD{}, metadata.MD{}
	for _, h := range rec.Headers {
		name := strings.ToLower(h.Name)
		switch {
		case strings.HasPrefix(h.Name, trailerPrefix):
			name = strings.ToLower(strings.TrimPrefix(h.Name, trailerPrefix))
			trailer.Append(name, decodeValue(name, h.Value))
		default:
			header.Append(name, decodeValue(name, h.Value))
		}
	}
	header.Set(ReplayedKey, "true")
	if rec.Status != 200 {
		trailer.Set(ReplayedKey, "true") // an error may travel trailers-only
	}
	_ = grpc.SetHeader(ctx, header)
	_ = grpc.SetTrailer(ctx, trailer)
	if rec.Status != 200 {
		var sp spb.Status
		if err := proto.Unmarshal(rec.Body, &sp); err != nil {
			return nil, status.Errorf(codes.Internal, "grpcmw: stored status unreadable: %v", err)
		}
		return nil, status.FromProto(&sp).Err()
	}
	n, k := binary.Uvarint(rec.Body)
	if k <= 0 || uint64(len(rec.Body)-k) < n {
		return nil, status.Error(codes.Internal, "grpcmw: stored reply unreadable")
	}
	typeName, body := rec.Body[k:k+int(n)], rec.Body[k+int(n):]
	mt, err := s.types.FindMessageByName(protoreflect.FullName(typeName))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpcmw: stored reply type %q unknown: %v", typeName, err)
	}
	reply := mt.New().Interface()
	if err := proto.Unmarshal(body, reply); err != nil {
		return nil, status.Errorf(codes.Internal, "grpcmw: stored reply unreadable: %v", err)
	}
	return reply, nil
}

// stream passes the handler's metadata on and keeps a copy to record.
type stream struct {
	grpc.ServerTransportStream
	header, trailer metadata.MD
	sent            bool
}

func (s *stream) SetHeader(md metadata.MD) error {
	if err := s.ServerTransportStream.SetHeader(md); err != nil {
		return err
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *stream) SendHeader(md metadata.MD) error {
	if err := s.ServerTransportStream.SendHeader(md); err != nil {
		return err
	}
	s.header, s.sent = metadata.Join(s.header, md), true
	return nil
}

func (s *stream) SetTrailer(md metadata.MD) error {
	if err := s.ServerTransportStream.SetTrailer(md); err != nil {
		return err
	}
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

// fields lists the recorded metadata as record headers; binary values
// (-bin keys) are base64-encoded, as stores keep text.
func (s *stream) fields() []idempotency.Header {
	var out []idempotency.Header
	for _, part := range []struct {
		md     metadata.MD
		prefix string
	}{{s.header, ""}, {s.trailer, trailerPrefix}} {
		for _, name := range slices.Sorted(maps.Keys(part.md)) {
			for _, v := range part.md[name] {
				out = append(out, idempotency.Header{Name: part.prefix + name, Value: encodeValue(name, v)})
			}
		}
	}
	return out
}

func encodeValue(name, v string) string {
	if strings.HasSuffix(name, "-bin") {
		return base64.RawStdEncoding.EncodeToString([]byte(v))
	}
	return v
}

func decodeValue(name, v string) string {
	if strings.HasSuffix(name, "-bin") {
		if b, err := base64.RawStdEncoding.DecodeString(v); err == nil {
			return string(b)
		}
	}
	return v
}
