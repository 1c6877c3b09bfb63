package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTP passes the trace a request comes with (its traceparent header) on in the request's
// context, where DialOptions' interceptors send it on to gRPC. It starts no span: the JSON
// API's calls get theirs from the gRPC server behind the gateway, and the other paths
// (/metrics, /healthz) none. Off, it returns h.
func (t *Tracing) HTTP(h http.Handler) http.Handler {
	if !t.on {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Traceparent") != "" {
			ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			if trace.SpanContextFromContext(ctx).IsValid() {
				r = r.WithContext(ctx)
			}
		}
		h.ServeHTTP(w, r)
	})
}
