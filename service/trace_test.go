package service_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"reservation/cache"
	"reservation/lock"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/repo"
	"reservation/service"
	"reservation/telemetry"
)

// tracedReplica serves a store, its feed and a Redis-free lock (lock.NewLocal with
// reservationd's default --lock-wait) with tracing on, the spans going to a recorder; its
// client sends the trace of its context (traceparent) with each call.
type tracedReplica struct {
	client pb.ReservationServiceClient
	spans  *tracetest.SpanRecorder
	tracer trace.Tracer
}

func startTraced(t *testing.T) *tracedReplica {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	tr := telemetry.New(tp)
	db := newDB(t)
	feed := queue.New(repo.NewChanges(db), repo.NewLeader(db), queue.Options{Logger: quiet, PollInterval: 5 * time.Millisecond, StampInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(tr.Context(context.Background()))
	done := make(chan struct{})
	go func() { feed.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	taken := cache.New(cache.Options{Logger: quiet})
	followed := make(chan struct{})
	go func() { taken.Follow(ctx, feed); close(followed) }()
	t.Cleanup(func() { cancel(); <-followed })
	store := repo.New(db, repo.Options{Locker: lock.NewLocal(5 * time.Second), Logger: quiet, Committed: feed.Nudge, Taken: taken})
	g := grpc.NewServer(append(tr.ServerOptions(), service.ServerOptions(quiet)...)...)
	service.New(service.All(store, feed), service.Options{Logger: quiet}).Register(g)
	lis := listenLoopback(t)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), append(tr.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &tracedReplica{client: pb.NewReservationServiceClient(conn), spans: sr, tracer: tp.Tracer("test")}
}

// inTrace returns the ended spans of trace id.
func inTrace(sr *tracetest.SpanRecorder, id trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.SpanContext().TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func one(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	got := named(spans, name)
	if len(got) != 1 {
		t.Fatalf("%d spans named %s, want 1; the trace: %v", len(got), name, names(spans))
	}
	return got[0]
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name()+"<"+s.Parent().SpanID().String()+">"+s.SpanContext().SpanID().String())
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func childOf(t *testing.T, child, parent sdktrace.ReadOnlySpan) {
	t.Helper()
	if child.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("span %s's parent is %s, want %s (%s)", child.Name(), child.Parent().SpanID(), parent.SpanContext().SpanID(), parent.Name())
	}
}

// A Reserve is one trace under the caller's span: the RPC, and below it the group commit
// that wrote it, which waited for the lock and then ran the transaction. A call with a request
// id is written by the same group commit as any other (the one write pipeline).
func TestReserveSpanTree(t *testing.T) {
	t.Parallel()
	r := startTraced(t)
	for _, tc := range []struct {
		name      string
		requestID string
		group     bool
	}{{"grouped", "", true}, {"with request id", "trace-req-1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, caller := r.tracer.Start(ctxFor(t), "caller")
			_, err := r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("traced-"+tc.name, 0, 1), RequestId: tc.requestID})
			caller.End()
			if err != nil {
				t.Fatal(err)
			}
			spans := inTrace(r.spans, caller.SpanContext().TraceID())
			rpc := one(t, spans, "reservation.v1.ReservationService/Reserve")
			childOf(t, rpc, one(t, spans, "caller"))
			if rpc.SpanKind() != trace.SpanKindServer {
				t.Errorf("RPC span kind %v, want server", rpc.SpanKind())
			}
			if v, _ := attr(rpc, "rpc.grpc.status_code"); v.AsInt64() != 0 {
				t.Errorf("rpc.grpc.status_code %v, want 0", v.AsInt64())
			}
			parent := rpc
			if tc.group {
				parent = one(t, spans, "group.commit")
				childOf(t, parent, rpc)
				if v, _ := attr(parent, "calls"); v.AsInt64() != 1 {
					t.Errorf("group.commit calls=%d, want 1", v.AsInt64())
				}
			}
			wait := one(t, spans, "lock.wait")
			childOf(t, wait, parent)
			tx := one(t, spans, "tx.attempt")
			childOf(t, tx, parent)
			if v, ok := attr(tx, "retry"); !ok || v.AsInt64() != 0 {
				t.Errorf("tx.attempt retry=%v (set: %v), want 0", v.AsInt64(), ok)
			}
			if tx.StartTime().Before(wait.EndTime()) {
				t.Errorf("the transaction started before the lock wait ended")
			}
		})
	}
}

// Concurrent Reserve calls written in one group: the group commit's span links to each call's
// RPC span, so that a call another one led can find the commit that wrote it.
func TestGroupCommitLinksItsCalls(t *testing.T) {
	t.Parallel()
	r := startTraced(t)
	const calls = 8
	ctx, caller := r.tracer.Start(ctxFor(t), "caller")
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			_, err := r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("grouped", float64(i), float64(i)+1)})
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	caller.End()
	spans := inTrace(r.spans, caller.SpanContext().TraceID())
	rpcs := map[trace.SpanID]bool{}
	for _, s := range named(spans, "reservation.v1.ReservationService/Reserve") {
		rpcs[s.SpanContext().SpanID()] = true
	}
	if len(rpcs) != calls {
		t.Fatalf("%d RPC spans, want %d", len(rpcs), calls)
	}
	linked := map[trace.SpanID]bool{}
	written := 0
	for _, g := range named(spans, "group.commit") {
		v, _ := attr(g, "calls")
		written += int(v.AsInt64())
		if !rpcs[g.Parent().SpanID()] {
			t.Errorf("group.commit's parent %s is none of the RPCs", g.Parent().SpanID())
		}
		for _, l := range g.Links() {
			linked[l.SpanContext.SpanID()] = true
		}
	}
	if written != calls {
		t.Errorf("group commits wrote %d calls, want %d", written, calls)
	}
	for id := range rpcs {
		if !linked[id] {
			t.Errorf("RPC span %s is linked from no group commit", id)
		}
	}
}

// A Listen stream's deliveries are spans under its RPC span, and the feed leader's stamping of
// the change is a span of its own.
func TestListenDeliverySpans(t *testing.T) {
	t.Parallel()
	r := startTraced(t)
	ctx, cancel := context.WithCancel(ctxFor(t))
	ctx, caller := r.tracer.Start(ctx, "listener")
	traced, err := r.client.Listen(ctx, &pb.ListenRequest{ResourceId: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := traced.Header(); err != nil {
		t.Fatal(err)
	}
	reserve(t, r.client, booking("watched", 0, 1))
	if _, err := traced.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	caller.End()
	var rpc sdktrace.ReadOnlySpan
	waitUntil(t, "the Listen span to end", func() bool {
		got := named(inTrace(r.spans, caller.SpanContext().TraceID()), "reservation.v1.ReservationService/Listen")
		if len(got) == 1 {
			rpc = got[0]
		}
		return rpc != nil
	})
	spans := inTrace(r.spans, caller.SpanContext().TraceID())
	deliver := one(t, spans, "feed.deliver")
	childOf(t, deliver, rpc)
	if v, _ := attr(deliver, "changes"); v.AsInt64() != 1 {
		t.Errorf("feed.deliver changes=%d, want 1", v.AsInt64())
	}
	var stamped int64
	for _, s := range named(r.spans.Ended(), "feed.stamp") {
		v, _ := attr(s, "changes")
		stamped += v.AsInt64()
	}
	if stamped != 1 {
		t.Errorf("feed.stamp spans stamped %d changes, want 1", stamped)
	}
}
