package main

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
	"reservation/server"
)

// TestStalledFeedIsVisible stops the sequencer from stamping by making every election fail
// with an SQL error, with the default stall bound, and sees the feed's health service turn
// NOT_SERVING, /readyz?feed=1 answer 503 while plain /readyz stays 200, the metrics rise, and
// the conflict cache stop proposing refusals (the database still refuses); then mends the
// database and sees the feed recover.
func TestStalledFeedIsVisible(t *testing.T) {
	t.Parallel()
	db, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_LOCK=local")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)
	api := pb.NewReservationServiceClient(conn)
	health := healthpb.NewHealthClient(conn)
	web := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + d.http

	feedStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: server.FeedHealthService})
		if err != nil {
			t.Fatalf("health of %s: %v", server.FeedHealthService, err)
		}
		return resp.GetStatus()
	}
	try := func(h int) error {
		start := time.Date(2033, 1, 1, h, 0, 0, 0, time.UTC)
		_, err := api.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u", ResourceId: "room",
			Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}})
		return err
	}
	reserve := func(h int) {
		if err := try(h); err != nil {
			t.Fatalf("reserve hour %d: %v", h, err)
		}
	}
	refuse := func(h int) {
		if err := try(h); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("reserve of the taken hour %d: %v, want FAILED_PRECONDITION", h, err)
		}
	}
	metric := func(name string) float64 {
		_, b := httpJSON(t, web, "GET", base+"/metrics", nil)
		m := regexp.MustCompile(`(?m)^reservation_` + name + ` (\S+)$`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no metric reservation_%s", name)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}

	reserve(1)
	refuse(1)
	if v := metric("cache_refusals_total"); v != 1 {
		t.Fatalf("cache refusals %g while the feed is current, want 1", v)
	}
	if s := feedStatus(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("feed health %s at start", s)
	}
	if code, b := httpJSON(t, web, "GET", base+"/readyz?feed=1", nil); code != 200 {
		t.Fatalf("/readyz?feed=1 at start: %d %s", code, b)
	}

	if _, err := db.ExecContext(ctx, "ALTER TABLE reservation_leases DROP COLUMN token"); err != nil {
		t.Fatal(err)
	}
	reserve(2)
	for feedStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		if ctx.Err() != nil {
			t.Fatal("the feed never reported itself stalled")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, b := httpJSON(t, web, "GET", base+"/readyz?feed=1", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz?feed=1 while stalled: %d %s, want 503", code, b)
	}
	if code, b := httpJSON(t, web, "GET", base+"/readyz", nil); code != 200 {
		t.Fatalf("plain /readyz while the feed is stalled: %d %s, want 200", code, b)
	}
	refuse(1) // watchFeed tells the cache before it turns the health service

	if v := metric("cache_refusals_total"); v != 1 {
		t.Fatalf("cache refusals %g after a refusal while the feed is stalled, want still 1", v)
	}
	if v := metric("feed_election_errors_total"); v == 0 {
		t.Fatal("no election error counted")
	}
	if v := metric("feed_unstamped_age_seconds"); v < 10 {
		t.Fatalf("unstamped age %gs while stalled, want at least the 10s bound", v)
	}

	if _, err := db.ExecContext(ctx, "ALTER TABLE reservation_leases ADD COLUMN token BIGINT NOT NULL DEFAULT 0"); err != nil {
		t.Fatal(err)
	}
	for feedStatus() != healthpb.HealthCheckResponse_SERVING {
		if ctx.Err() != nil {
			t.Fatal("the feed never recovered")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The logs are read once the process is gone: it writes them while it runs.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if !regexp.MustCompile(`"level":"ERROR","msg":"change feed election failed`).Match(d.logs.Bytes()) {
		t.Fatalf("no ERROR line for the failed election; logs:\n%s", d.logs)
	}
}
