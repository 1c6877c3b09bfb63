package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ServerOptions are the interceptors that give each RPC a server span, a child of the
// caller's traceparent when it sent one, and put the tracer in the call's context. They go
// first, so that the span covers the other interceptors (auth, deadlines, metrics). Health
// and reflection calls get no span. Off, there are none.
func (t *Tracing) ServerOptions() []grpc.ServerOption {
	if !t.on {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(t.unary), grpc.ChainStreamInterceptor(t.stream)}
}

// DialOptions are the client interceptors that send the context's trace (traceparent and
// tracestate) in the outgoing metadata: the HTTP gateway's connection to its in-memory server
// carries the trace the HTTP request came with. They start no span of their own, so a gateway
// call is one span, the in-memory server's. Off, there are none.
func (t *Tracing) DialOptions() []grpc.DialOption {
	if !t.on {
		return nil
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(t.inject(ctx), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(t.inject(ctx), desc, cc, method, opts...)
		}),
	}
}

func (t *Tracing) inject(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	t.prop.Inject(ctx, carrier(md))
	return metadata.NewOutgoingContext(ctx, md)
}

func (t *Tracing) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if untraced(info.FullMethod) {
		return handler(ctx, req)
	}
	ctx, span := t.startRPC(ctx, info.FullMethod)
	resp, err := handler(ctx, req)
	endRPC(span, err)
	return resp, err
}

func (t *Tracing) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if untraced(info.FullMethod) {
		return handler(srv, ss)
	}
	ctx, span := t.startRPC(ss.Context(), info.FullMethod)
	err := handler(srv, &tracedStream{ServerStream: ss, ctx: ctx})
	endRPC(span, err)
	return err
}

type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tracedStream) Context() context.Context { return s.ctx }

// untraced are the methods not worth a span: health probes and reflection.
func untraced(method string) bool { return strings.HasPrefix(method, "/grpc.") }

func (t *Tracing) startRPC(ctx context.Context, method string) (context.Context, trace.Span) {
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = t.prop.Extract(ctx, carrier(md))
	name := strings.TrimPrefix(method, "/")
	service, rpc, _ := strings.Cut(name, "/")
	ctx = withTracer(ctx, t.tracer)
	return t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service), attribute.String("rpc.method", rpc)))
}

// endRPC records the call's status code; the codes that mean the server failed (as the
// OpenTelemetry conventions list them for a server) make the span an error.
func endRPC(span trace.Span, err error) {
	s := status.Convert(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(s.Code())))
	switch s.Code() {
	case grpccodes.Unknown, grpccodes.DeadlineExceeded, grpccodes.Unimplemented, grpccodes.Internal, grpccodes.Unavailable, grpccodes.DataLoss:
		span.SetStatus(codes.Error, s.Message())
	}
	span.End()
}

// carrier lets the propagator read and write gRPC metadata.
type carrier metadata.MD

func (c carrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c carrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
