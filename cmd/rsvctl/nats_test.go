package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation/jetstream"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/server"
)

// TestFromNATSShowsListen: `rsvctl listen --from-nats` prints the same changes as `rsvctl
// listen`, byte for byte in JSON (seq, cursor and all), for every change and for one
// resource's, a move away from it included.
func TestFromNATSShowsListen(t *testing.T) {
	urls := os.Getenv("RESERVATION_TEST_NATS_URLS")
	if urls == "" {
		t.Skip("RESERVATION_TEST_NATS_URLS is not set: `make test-nats` starts a 3-node JetStream cluster (scripts/nats.sh) and runs this test")
	}
	db, _ := repotest.NewDB(t)
	b := make([]byte, 4)
	rand.Read(b)
	stream, prefix := "RSVCTL_"+strings.ToUpper(hex.EncodeToString(b)), "rsvctl."+hex.EncodeToString(b)
	d, err := server.New(t.Context(), db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Export: &jetstream.Options{Conn: jetstream.ConnConfig{URLs: strings.Split(urls, ",")}, Stream: stream, SubjectPrefix: prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() {
		d.Close()
		nc, err := jetstream.Connect(jetstream.ConnConfig{URLs: strings.Split(urls, ",")})
		if err == nil {
			defer nc.Close()
			if err := deleteStream(nc, stream); err != nil {
				t.Log(err)
			}
		}
	})
	addr := d.GRPCAddr()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewReservationServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Date(2031, 3, 1, 9, 0, 0, 0, time.UTC)
	var moved string
	for i := range 30 {
		s := start.Add(time.Duration(i) * time.Hour)
		resp, err := client.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u", ResourceId: fmt.Sprintf("room-%d", i%3),
			Start: timestamppb.New(s), End: timestamppb.New(s.Add(time.Hour))}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 9 {
			moved = resp.GetReservation().GetId()
		}
	}
	if _, err := client.Update(ctx, &pb.UpdateRequest{Id: moved, ResourceId: "room-1", UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resource_id"}}}); err != nil {
		t.Fatalf("move room-0 to room-1: %v", err)
	}
	// Wait until the stream holds every change.
	for {
		lag, err := d.Exporter().Lag(ctx)
		_, last, berr := repo.NewChanges(db).Bounds(ctx)
		if err == nil && berr == nil && last >= 31 && lag.Changes == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the export never caught up: %+v %v", lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	listen := func(args ...string) string {
		lctx, lcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer lcancel()
		var out, errOut bytes.Buffer
		run(lctx, append([]string{"--addr", addr, "-o", "json", "listen", "--after", "0"}, args...), &out, &errOut)
		return out.String()
	}
	for _, resource := range []string{"", "room-0"} {
		fromNATS := []string{"--from-nats", urls, "--nats-stream", stream, "--nats-subject-prefix", prefix}
		var filter []string
		if resource != "" {
			filter = []string{"--resource", resource}
		}
		want, got := listen(filter...), listen(append(filter, fromNATS...)...)
		n := strings.Count(want, "\n")
		if resource == "" && n != 31 || resource == "room-0" && n != 11 {
			t.Fatalf("listen --resource %q printed %d changes:\n%s", resource, n, want)
		}
		if got != want {
			t.Fatalf("listen --resource %q --from-nats printed\n%s\nlisten printed\n%s", resource, got, want)
		}
	}
}

func deleteStream(nc *nats.Conn, stream string) error {
	js, err := natsjs.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return js.DeleteStream(ctx, stream)
}
