package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"reservation/telemetry"
)

func recorder(t *testing.T) (*telemetry.Tracing, *tracetest.SpanRecorder, trace.Tracer) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return telemetry.New(tp), sr, tp.Tracer("test")
}

// A log line written with a recording span's context carries its trace and span ids; one
// without a span carries neither.
func TestLogLinesCarryTraceIDs(t *testing.T) {
	_, _, tracer := recorder(t)
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("replica", "a")
	ctx, span := tracer.Start(context.Background(), "call")
	log.InfoContext(ctx, "inside")
	span.End()
	log.InfoContext(context.Background(), "outside")
	dec := json.NewDecoder(&buf)
	var inside, outside map[string]any
	if err := dec.Decode(&inside); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&outside); err != nil {
		t.Fatal(err)
	}
	if inside["trace_id"] != span.SpanContext().TraceID().String() || inside["span_id"] != span.SpanContext().SpanID().String() || inside["replica"] != "a" {
		t.Errorf("inside a span: %v, want trace_id %s span_id %s", inside, span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("outside a span: %v has a trace_id", outside)
	}
}

// Start records spans only in a context that carries the tracer, and an End given an error
// marks the span as failed.
func TestStartNeedsTheTracerInContext(t *testing.T) {
	tr, sr, _ := recorder(t)
	ctx, end := telemetry.Start(context.Background(), "untraced")
	end(nil)
	if trace.SpanFromContext(ctx).SpanContext().IsValid() || len(sr.Ended()) != 0 {
		t.Fatalf("a span was started in a context without the tracer")
	}
	ctx, end = telemetry.Start(tr.Context(context.Background()), "outer")
	err := telemetry.Run(ctx, "inner", func(context.Context) error { return errors.New("boom") })
	end(&err)
	spans := sr.Ended()
	if len(spans) != 2 || spans[0].Name() != "inner" || spans[1].Name() != "outer" || spans[0].Parent().SpanID() != spans[1].SpanContext().SpanID() {
		t.Fatalf("spans %v", spans)
	}
	if spans[0].Status().Description != "boom" {
		t.Errorf("inner status %+v, want the error", spans[0].Status())
	}
	p := telemetry.Begin(ctx, "idle")
	p.End(false, nil)
	p.End(true, nil)
	if n := len(sr.Ended()); n != 3 {
		t.Errorf("%d spans after one kept and one dropped Pending, want 3", n)
	}
}

// The HTTP middleware puts the caller's traceparent in the request's context.
func TestHTTPTakesTraceparent(t *testing.T) {
	tr, _, _ := recorder(t)
	var got trace.SpanContext
	h := tr.HTTP(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = trace.SpanContextFromContext(r.Context()) }))
	req := httptest.NewRequest("GET", "/v1/reservations/x", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if got.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || got.SpanID().String() != "00f067aa0ba902b7" || !got.IsRemote() {
		t.Errorf("context's span %+v, want the traceparent's", got)
	}
}

// Off, tracing adds no interceptor and no middleware.
func TestOffAddsNothing(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	off, err := telemetry.FromEnv(context.Background(), "svc", "v", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if off.Enabled() || off.ServerOptions() != nil || off.DialOptions() != nil {
		t.Errorf("tracing off still adds interceptors")
	}
	h := http.NotFoundHandler()
	if got := off.HTTP(h); got == nil {
		t.Errorf("HTTP(h) is nil")
	}
	if ctx := off.Context(context.Background()); ctx != context.Background() {
		t.Errorf("Context added a tracer with tracing off")
	}
}
