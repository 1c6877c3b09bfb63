// Package telemetry traces the service with OpenTelemetry: a span for each RPC and for the
// steps of a write (the lock wait, each transaction attempt, the group commit) and of the
// change feed (stamping, delivery), W3C traceparent propagation over gRPC and HTTP, OTLP
// export configured by the standard OTEL_* environment variables, and trace ids in log lines.
//
// The instrumented code finds the tracer in its context: the RPC interceptors put it there,
// and Tracing.Context does for background work. A context without one makes Start a no-op
// costing one context lookup, which is what tracing off costs.
package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerKey is the context key of the trace.Tracer the instrumented code starts spans with.
type tracerKey struct{}

// withTracer returns ctx carrying t for Start.
func withTracer(ctx context.Context, t trace.Tracer) context.Context {
	return context.WithValue(ctx, tracerKey{}, t)
}

func tracerOf(ctx context.Context) (trace.Tracer, bool) {
	t, ok := ctx.Value(tracerKey{}).(trace.Tracer)
	return t, ok
}

// End ends a span started by Start, recording *err as the span's error when err and *err are
// not nil.
type End func(err *error)

func nop(*error) {}

// Start starts a span named name, a child of ctx's span, when ctx carries a tracer; otherwise
// it returns ctx and an End that does nothing. Use it as
//
//	ctx, end := telemetry.Start(ctx, "tx.attempt", attribute.Int("retry", n))
//	defer end(&err)
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, End) {
	t, ok := tracerOf(ctx)
	if !ok {
		return ctx, nop
	}
	ctx, span := t.Start(ctx, name, trace.WithAttributes(attrs...))
	return ctx, func(err *error) { finish(span, err) }
}

// StartLinked is Start for work done on behalf of several calls, such as a group commit: the
// span links to the span of each linked item's context.
func StartLinked[T any](ctx context.Context, name string, linked []T, ctxOf func(T) context.Context, attrs ...attribute.KeyValue) (context.Context, End) {
	t, ok := tracerOf(ctx)
	if !ok {
		return ctx, nop
	}
	links := make([]trace.Link, 0, len(linked))
	for _, l := range linked {
		if sc := trace.SpanContextFromContext(ctxOf(l)); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := t.Start(ctx, name, trace.WithAttributes(attrs...), trace.WithLinks(links...))
	return ctx, func(err *error) { finish(span, err) }
}

// Run runs fn in a span named name and returns its error.
func Run(ctx context.Context, name string, fn func(context.Context) error, attrs ...attribute.KeyValue) error {
	ctx, end := Start(ctx, name, attrs...)
	err := fn(ctx)
	end(&err)
	return err
}

// Pending is a span decided after the fact, for work that repeats often and mostly finds
// nothing to do (the feed leader's stamping): Begin notes the start, and End records the span
// only when it is worth keeping.
type Pending struct {
	ctx   context.Context
	t     trace.Tracer
	name  string
	start time.Time
}

// Begin notes the start of a span that End may record.
func Begin(ctx context.Context, name string) Pending {
	t, ok := tracerOf(ctx)
	if !ok {
		return Pending{}
	}
	return Pending{ctx: ctx, t: t, name: name, start: time.Now()}
}

// End records the span from Begin until now when keep is true or *err is an error.
func (p Pending) End(keep bool, err *error, attrs ...attribute.KeyValue) {
	if p.t == nil || !keep && (err == nil || *err == nil) {
		return
	}
	_, span := p.t.Start(p.ctx, p.name, trace.WithTimestamp(p.start), trace.WithAttributes(attrs...))
	finish(span, err)
}

func finish(span trace.Span, err *error) {
	if err != nil && *err != nil {
		span.SetStatus(codes.Error, (*err).Error())
	}
	span.End()
}
