package main

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// otlpReceiver is an OTLP/HTTP trace collector on loopback: it keeps the spans it is sent,
// with the service.name of their resource.
type otlpReceiver struct {
	mu       sync.Mutex
	spans    []*tracepb.Span
	services map[string]bool
	srv      *httptest.Server
}

func startReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{services: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(req.Body)
		var export collectorpb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &export)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					r.services[a.GetValue().GetStringValue()] = true
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// trace returns the spans received of the trace with the hex id.
func (r *otlpReceiver) trace(id string) []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range r.spans {
		if hex.EncodeToString(s.GetTraceId()) == id {
			out = append(out, s)
		}
	}
	return out
}

// The binary with OTEL_EXPORTER_OTLP_ENDPOINT set exports its spans over OTLP: a Reserve over
// gRPC and one over HTTP each arrive as a trace under the caller's traceparent, the HTTP one
// with a single RPC span (the gateway adds none). The spans are flushed at SIGTERM: the batch
// delay is the SDK's default 5 s, and the test stops the daemon before that.
func TestBinaryExportsTraces(t *testing.T) {
	rcv := startReceiver(t)
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.srv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_SERVICE_NAME=rsv-test")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)

	const (
		grpcTrace  = "0af7651916cd43dd8448eb211c80319c"
		grpcParent = "b7ad6b7169203331"
		httpTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		httpParent = "00f067aa0ba902b7"
	)
	start := time.Date(2032, 1, 1, 10, 0, 0, 0, time.UTC)
	c := pb.NewReservationServiceClient(conn)
	callCtx := metadata.AppendToOutgoingContext(ctx, "traceparent", "00-"+grpcTrace+"-"+grpcParent+"-01")
	if _, err := c.Reserve(callCtx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-1",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}}); err != nil {
		t.Fatalf("Reserve: %v\n%s", err, d.logs)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	code, b := httpJSON(t, hc, "POST", "http://"+d.http+"/v1/reservations",
		jsonObject{"reservation": jsonObject{"user_id": "op", "resource_id": "room-2", "start": "2032-01-01T10:00:00Z", "end": "2032-01-01T11:00:00Z"}},
		"traceparent", "00-"+httpTrace+"-"+httpParent+"-01")
	if code != 200 {
		t.Fatalf("POST /v1/reservations: %d %s", code, b)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, d.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30s after SIGTERM\n%s", d.logs)
	}

	if !rcv.services["rsv-test"] {
		t.Errorf("no span came with service.name rsv-test (OTEL_SERVICE_NAME): %v", rcv.services)
	}
	for _, tc := range []struct{ via, traceID, parent string }{{"gRPC", grpcTrace, grpcParent}, {"HTTP", httpTrace, httpParent}} {
		spans := rcv.trace(tc.traceID)
		var rpc *tracepb.Span
		byName := map[string][]*tracepb.Span{}
		for _, s := range spans {
			byName[s.GetName()] = append(byName[s.GetName()], s)
		}
		if got := byName["reservation.v1.ReservationService/Reserve"]; len(got) != 1 {
			t.Errorf("%s: %d Reserve spans in trace %s, want 1; received %d spans in all\n%s", tc.via, len(got), tc.traceID, len(rcv.spans), d.logs)
			continue
		} else {
			rpc = got[0]
		}
		if p := hex.EncodeToString(rpc.GetParentSpanId()); p != tc.parent || rpc.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: Reserve span's parent %s kind %v, want %s, server", tc.via, p, rpc.GetKind(), tc.parent)
		}
		var names []string
		for n := range byName {
			names = append(names, n)
		}
		for _, want := range []string{"group.commit", "lock.wait", "tx.attempt"} {
			if len(byName[want]) != 1 {
				t.Errorf("%s: trace holds %v, want one %s", tc.via, names, want)
			}
		}
		if len(spans) != 4 {
			t.Errorf("%s: %d spans %s in the trace, want 4 (RPC, group commit, lock wait, transaction)", tc.via, len(spans), strings.Join(names, ", "))
		}
	}
}
