package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	"reservation/cache"
	"reservation/lock"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// TestCloseOrder: while a call is in flight, Close first fails readiness (/readyz's check and
// the health service), then waits for the call, which completes, then for every goroutine.
func TestCloseOrder(t *testing.T) {
	db, _ := repotest.NewDB(t)
	local := lock.NewLocal(0) // the default wait, 5s
	locker := &signalLocker{Locker: local, called: make(chan struct{}, 1)}
	d, err := New(t.Context(), db, locker, Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	if err := d.readyz(t.Context()); err != nil {
		t.Fatalf("not ready after Start: %v", err)
	}
	resp, err := http.Get("http://" + d.HTTPAddr() + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after Start: %v %v", resp, err)
	}
	resp.Body.Close()
	conn, err := grpc.NewClient(d.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// A Reserve that waits for the lock the test holds: it is in flight until the test lets go.
	unlock, err := local.Lock(t.Context(), "room")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC)
	reserved := make(chan error, 1)
	go func() {
		_, err := pb.NewReservationServiceClient(conn).Reserve(context.Background(), &pb.ReserveRequest{Reservation: &pb.Reservation{
			UserId: "u", ResourceId: "room", Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
		reserved <- err
	}()
	<-locker.called

	closed := make(chan struct{})
	go func() { d.Close(); close(closed) }()
	for d.ready.Load() {
		time.Sleep(time.Millisecond)
	}
	if err := d.readyz(t.Context()); err == nil {
		t.Error("/readyz's check passes while closing")
	}
	h, err := d.health.Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health while closing: %v %v, want NOT_SERVING", h, err)
	}
	select {
	case err := <-reserved:
		t.Fatalf("the in-flight Reserve ended (%v) before the test let go of its lock", err)
	case <-closed:
		t.Fatal("Close returned with a call in flight")
	default:
	}
	unlock(t.Context())
	if err := <-reserved; err != nil {
		t.Errorf("the in-flight Reserve failed: %v, want it drained", err)
	}
	<-closed
	if sub, err := d.feed.Subscribe(t.Context(), reservation.ChangeFilter{}); err == nil {
		if _, err := sub.Next(t.Context()); err == nil {
			t.Error("the feed still serves after Close")
		}
	}
}

// signalLocker tells when a Lock call has begun.
type signalLocker struct {
	reservation.Locker
	called chan struct{}
}

func (l *signalLocker) Lock(ctx context.Context, keys ...string) (reservation.Unlock, error) {
	select {
	case l.called <- struct{}{}:
	default:
	}
	return l.Locker.Lock(ctx, keys...)
}

// A Daemon closed without being started lets its ports go.
func TestCloseWithoutStart(t *testing.T) {
	db, _ := repotest.NewDB(t)
	d, err := New(t.Context(), db, nil, Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := d.GRPCAddr()
	if err := d.Close(); err != nil {
		t.Errorf("Close of a Daemon never started: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the port is still held after Close: %v", err)
	}
	lis.Close()
}

// TestNewFailureReleasesWhatItMade: New that fails (here the HTTP port is taken) returns the
// error and lets go of what it had made, the gRPC port among them. Needs no server: New
// opens no connection to the database.
func TestNewFailureReleasesWhatItMade(t *testing.T) {
	db, err := sqlx.Open("mysql", "root@tcp(127.0.0.1:1)/none")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr := free.Addr().String()
	free.Close()
	d, err := New(t.Context(), db, nil, Options{GRPCAddr: grpcAddr, HTTPAddr: taken.Addr().String(), Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		d.Close()
		t.Fatal("New succeeded on a taken HTTP port")
	}
	if !strings.Contains(err.Error(), "listen on "+taken.Addr().String()) {
		t.Errorf("New: %v; want the HTTP address named", err)
	}
	lis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		t.Fatalf("the gRPC port is still held after New failed: %v", err)
	}
	lis.Close()
}

// TestCloseReportsACutDrain: a call still in flight when the drain bound passes is cut, and
// Close says so. The bound is 200ms (the default is 20s) so that the test does not wait for it;
// TestCloseOrder drains with the default.
func TestCloseReportsACutDrain(t *testing.T) {
	db, _ := repotest.NewDB(t)
	local := lock.NewLocal(0) // the default wait, 5s: the Reserve below outlives the drain bound
	locker := &signalLocker{Locker: local, called: make(chan struct{}, 1)}
	d, err := New(t.Context(), db, locker, Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Drain: 200 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	conn, err := grpc.NewClient(d.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	unlock, err := local.Lock(t.Context(), "room")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(context.Background())
	start := time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC)
	reserved := make(chan error, 1)
	go func() {
		_, err := pb.NewReservationServiceClient(conn).Reserve(context.Background(), &pb.ReserveRequest{Reservation: &pb.Reservation{
			UserId: "u", ResourceId: "room", Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
		reserved <- err
	}()
	<-locker.called
	err = d.Close()
	if err == nil || !strings.Contains(err.Error(), "drain: bound 200ms reached") {
		t.Errorf("Close with a call in flight past the bound: %v; want the cut drain reported", err)
	}
	if err := <-reserved; err == nil {
		t.Error("the Reserve cut at the drain bound succeeded")
	}
}
