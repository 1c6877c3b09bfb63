package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
)

// TestOpsFilesNameExportedMetrics: every metric the alert rules and the dashboard (ops/) query
// is one the binary exports, so that a renamed metric cannot leave an alert that never fires.
func TestOpsFilesNameExportedMetrics(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	d := startDaemon(t, "RESERVATION_MYSQL_DSN="+dsn, "RESERVATION_REDIS_ADDR="+locktest.Addr(), "RESERVATION_LOCK=redis")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := d.dial(t)
	d.waitServing(t, ctx, conn)
	start := time.Date(2032, 1, 1, 10, 0, 0, 0, time.UTC)
	// One write, so that the labelled series (calls, lock waits) exist.
	if _, err := pb.NewReservationServiceClient(conn).Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "op", ResourceId: "room-1",
		Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Hour))}}); err != nil {
		t.Fatal(err)
	}
	_, text := httpJSON(t, http.DefaultClient, "GET", "http://"+d.http+"/metrics", nil)
	exported := map[string]bool{}
	for _, line := range strings.Split(string(text), "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			name, _, _ = strings.Cut(name, "{")
			exported[name] = true
		}
	}
	metric := regexp.MustCompile(`\b(reservation_[a-z_]+|go_sql_[a-z_]+)`)
	for _, file := range []string{"../../ops/prometheus/alerts.yml", "../../ops/grafana/reservationd.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, name := range metric.FindAllString(string(b), -1) {
			if !seen[name] && !exported[name] {
				t.Errorf("%s queries %s, which the binary does not export", file, name)
			}
			seen[name] = true
		}
		if len(seen) < 7 {
			t.Errorf("%s names only %d metrics", file, len(seen))
		}
	}
}
