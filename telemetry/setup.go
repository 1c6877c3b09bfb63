package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// instrumentation is the name the service's tracer goes by.
const instrumentation = "reservation"

// Tracing is the process's tracer provider, and what puts it to use: gRPC interceptors, an
// HTTP middleware and contexts for background work. Off (the zero value's behaviour too), it
// adds nothing to a call.
type Tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	on       bool
	shutdown func(context.Context) error
	prop     propagation.TextMapPropagator
}

// New returns Tracing with the spans going to tp (a test's span recorder, say).
func New(tp trace.TracerProvider) *Tracing {
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation), on: true, prop: propagation.TraceContext{},
		shutdown: func(context.Context) error { return nil }}
}

// Off returns Tracing that records nothing: a no-op tracer provider, and no interceptors.
func Off() *Tracing {
	tp := noop.NewTracerProvider()
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation), prop: propagation.TraceContext{},
		shutdown: func(context.Context) error { return nil }}
}

// FromEnv sets tracing up from the standard OpenTelemetry environment variables. It is off
// unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, or when
// OTEL_TRACES_EXPORTER is "none". On, spans are batched to an OTLP exporter speaking
// OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL: http/protobuf (the default) or grpc. The exporters
// read the other OTEL_EXPORTER_OTLP_* variables (headers, timeout, certificates), the SDK
// reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*, and the resource OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (service.name defaults to service). Export errors are logged to log.
func FromEnv(ctx context.Context, service, version string, log *slog.Logger) (*Tracing, error) {
	getenv := os.Getenv // the exporters and the SDK read the process's environment too
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" ||
		strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") || strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return Off(), nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// Later sources win: the environment's service.name over the default.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service), attribute.String("service.version", version)),
		resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	// The SDK reports export failures to OpenTelemetry's one process-wide error handler; the
	// daemon's log is where they belong.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := New(tp)
	t.shutdown = tp.Shutdown
	return t, nil
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t.on }

// Provider is the tracer provider.
func (t *Tracing) Provider() trace.TracerProvider { return t.provider }

// Shutdown flushes the spans not yet exported and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error { return t.shutdown(ctx) }

// Context returns ctx carrying the tracer, for background work (the change feed) whose spans
// have no RPC to descend from.
func (t *Tracing) Context(ctx context.Context) context.Context {
	if !t.on {
		return ctx
	}
	return withTracer(ctx, t.tracer)
}
