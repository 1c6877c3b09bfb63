package service

import (
	"context"
	"log/slog"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// grpc-go answers a request it cannot decode — a string field that is not UTF-8, bytes that are
// not protobuf — with INTERNAL before any handler runs. Those are the client's mistakes, so the
// codec below decodes what it can, drops the bad fields, and leaves their names in an unknown
// field that the interceptors turn into INVALID_ARGUMENT.

// badFieldsNum is the unknown field that carries the names of the fields the codec dropped.
const badFieldsNum protowire.Number = protowire.MaxValidNumber

// ServerOptions are the options a gRPC server of this API needs: the forgiving codec, the
// interceptors that report what it found, and panic recovery.
func ServerOptions(log *slog.Logger) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec{encoding.GetCodecV2("proto")}),
		grpc.ChainUnaryInterceptor(unaryRecover(log), unaryDecodeCheck),
		grpc.ChainStreamInterceptor(streamRecover(log), streamDecodeCheck),
	}
}

type codec struct{ encoding.CodecV2 }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	m, ok := v.(proto.Message)
	if err == nil || !ok {
		return err
	}
	var bad []string
	clean, ok := scrub(data.Materialize(), m.ProtoReflect().Descriptor(), "", &bad)
	proto.Reset(m)
	if !ok || proto.Unmarshal(clean, m) != nil {
		bad = []string{""} // not protobuf at all
	}
	r := m.ProtoReflect()
	marker := protowire.AppendTag(nil, badFieldsNum, protowire.BytesType)
	marker = protowire.AppendString(marker, strings.Join(bad, "\n"))
	r.SetUnknown(append(r.GetUnknown(), marker...))
	return nil
}

// scrub copies the wire form b of a message of type md without the string fields that are not
// UTF-8, whose names it adds to bad. It reports false when b is not well-formed.
func scrub(b []byte, md protoreflect.MessageDescriptor, prefix string, bad *[]string) ([]byte, bool) {
	out := make([]byte, 0, len(b))
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, false
		}
		field, rest := b[:n+m], b[n+m:]
		b = rest
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			out = append(out, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				*bad = append(*bad, prefix+string(fd.Name()))
				continue
			}
		case protoreflect.MessageKind:
			inner, ok := scrub(v, fd.Message(), prefix+string(fd.Name())+".", bad)
			if !ok {
				return nil, false
			}
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, inner)
			continue
		}
		out = append(out, field...)
	}
	return out, true
}

// decodeErr returns INVALID_ARGUMENT naming the fields the codec dropped from req, if any.
func decodeErr(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	unknown := m.ProtoReflect().GetUnknown()
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			return nil
		}
		m := protowire.ConsumeFieldValue(num, typ, unknown[n:])
		if m < 0 {
			return nil
		}
		if num == badFieldsNum && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(unknown[n:])
			var check fieldCheck
			for _, f := range strings.Split(string(v), "\n") {
				if f == "" {
					check.Add("request", "is not a valid protobuf message")
				} else {
					check.Add(f, "must be valid UTF-8")
				}
			}
			return badRequest(check.String(), check.Violations)
		}
		unknown = unknown[n+m:]
	}
	return nil
}

func unaryDecodeCheck(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := decodeErr(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func streamDecodeCheck(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, checkedStream{ss})
}

// checkedStream reports the fields the codec dropped from each message it receives.
type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return decodeErr(m)
}
