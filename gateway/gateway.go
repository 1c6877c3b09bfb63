// Package gateway is the service's HTTP face: every RPC as JSON (grpc-gateway, streams as
// newline-delimited JSON), the OpenAPI document, health and readiness, and the metrics.
package gateway

import (
	"context"
	_ "embed"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"reservation/buildinfo"
	pb "reservation/proto/reservation/v1"
	"reservation/web"
)

//go:embed reservation.swagger.json
var openAPI []byte

// Options say what the HTTP port serves besides the API.
type Options struct {
	// Conn reaches the gRPC service the JSON API translates to.
	Conn *grpc.ClientConn
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Ready reports whether the service can serve (MySQL answers); /readyz says so.
	Ready func(ctx context.Context) error
	// FeedReady, when set, reports whether the change feed is current; /readyz?feed=1 asks it
	// too. Plain readiness is about serving writes, so a stalled feed does not take every
	// replica out of rotation.
	FeedReady func() error
	// Profile serves Go's profiles under /debug/pprof/.
	Profile bool
}

// New returns the HTTP handler:
//
//	/              the timeline page (package web)
//	/v1/...        the JSON API (see the google.api.http options in the proto)
//	/openapi.json  its OpenAPI v2 document
//	/healthz       200 while the process runs
//	/readyz        200 while the database answers, 503 otherwise
//	/readyz?feed=1 the same, and 503 while the change feed is stalled
//	/metrics       Prometheus metrics
func New(ctx context.Context, opts Options) (http.Handler, error) {
	rs := routes()
	api := runtime.NewServeMux(runtime.WithForwardResponseOption(startStream),
		// Field names as the proto spells them (resource_id), the same in requests and answers.
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}),
		runtime.WithErrorHandler(rs.errorHandler),
		runtime.WithMiddlewares(rs.strict))
	if err := pb.RegisterReservationServiceHandler(ctx, api, opts.Conn); err != nil {
		return nil, err
	}
	doc, err := documentErrors(openAPI)
	if err == nil {
		doc, err = rs.documentQuery(doc)
	}
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	page := web.Handler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /assets/", page)
	doc = buildinfo.OpenAPI(doc, buildinfo.Version()) // info.version: the running build
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := opts.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if feed := r.URL.Query().Get("feed"); feed != "" && feed != "0" && opts.FeedReady != nil {
			if err := opts.FeedReady(); err != nil {
				http.Error(w, "feed not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	if opts.Profile {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux, nil
}

// strict refuses the query parameters a route does not take and the times and durations that
// do not parse (times.go), and keeps a stream's error from setting the status of a response
// whose header is already sent.
func (rs routeSet) strict(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if rt := rs.of(r); rt != nil {
			if err := rt.checkQuery(r); err != nil {
				rs.writeError(w, r, err)
				return
			}
			if err := rt.checkTimes(r); err != nil {
				rs.writeError(w, r, err)
				return
			}
		}
		next(&headerOnce{ResponseWriter: w}, r, params)
	}
}

// headerOnce drops a second WriteHeader. startStream sends a stream's 200 before its first
// message; if the stream then fails, grpc-gateway writes the error as the stream's last line
// and also calls WriteHeader with the error's status, which net/http can only log as
// "superfluous response.WriteHeader call".
type headerOnce struct {
	http.ResponseWriter
	sent bool
}

func (h *headerOnce) WriteHeader(code int) {
	if !h.sent {
		h.sent = true
		h.ResponseWriter.WriteHeader(code)
	}
}

func (h *headerOnce) Write(b []byte) (int, error) {
	h.sent = true
	return h.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush.
func (h *headerOnce) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// startStream sends a stream's headers as soon as the stream starts instead of with its first
// message: a Listen from now on may stay quiet for long, and its reservation-after-seq header
// (Grpc-Metadata-Reservation-After-Seq) is what a client needs before reading the state.
// A stream refused before it started (trailers only: no header) is left alone, so that its
// error still becomes the HTTP status.
func startStream(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if md, ok := runtime.ServerMetadataFromContext(ctx); m == nil && ok && len(md.HeaderMD) > 0 { // once, before a stream's first message
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		return http.NewResponseController(w).Flush()
	}
	return nil
}
