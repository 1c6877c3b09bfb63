package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rsvjs "reservation/jetstream"
	pb "reservation/proto/reservation/v1"
	"reservation/repo/repotest"
	"reservation/server"
)

// TestConsumerResumesAndMatchesListen: the example follows room-0 while changes are made on
// three rooms (moves away from room-0 among them), stops halfway, resumes from the seq it
// last applied, and ends with exactly what Listen delivers for room-0: same changes, same
// order, nothing twice.
func TestConsumerResumesAndMatchesListen(t *testing.T) {
	urls := os.Getenv("RESERVATION_TEST_NATS_URLS")
	if urls == "" {
		t.Skip("RESERVATION_TEST_NATS_URLS is not set: `make test-nats` starts a 3-node JetStream cluster (scripts/nats.sh) and runs this test")
	}
	db, _ := repotest.NewDB(t)
	b := make([]byte, 4)
	rand.Read(b)
	stream, prefix := "EXAMPLE_"+strings.ToUpper(hex.EncodeToString(b)), "example."+hex.EncodeToString(b)
	d, err := server.New(t.Context(), db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Export: &rsvjs.Options{Conn: rsvjs.ConnConfig{URLs: strings.Split(urls, ",")}, Stream: stream, SubjectPrefix: prefix},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(func() { d.Close() })
	nc, err := rsvjs.Connect(rsvjs.ConnConfig{URLs: strings.Split(urls, ",")})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer js.DeleteStream(context.Background(), stream)
	conn, err := grpc.NewClient(d.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewReservationServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	room0 := 0 // changes of room-0 made: its bookings and the moves away from it
	write := func(from, n int) {
		start := time.Date(2031, 3, 1, 9, 0, 0, 0, time.UTC)
		for i := from; i < from+n; i++ {
			s := start.Add(time.Duration(i) * time.Hour)
			resp, err := client.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u", ResourceId: fmt.Sprintf("room-%d", i%3),
				Start: timestamppb.New(s), End: timestamppb.New(s.Add(time.Hour))}})
			if err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				room0++
			}
			if i%7 == 0 && i%3 == 0 { // a move away from room-0
				room0++
				if _, err := client.Update(ctx, &pb.UpdateRequest{Id: resp.GetReservation().GetId(), ResourceId: "room-9",
					UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"resource_id"}}}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	var applied []*pb.ListenResponse
	follow := func(until int) {
		fctx, fcancel := context.WithCancel(ctx)
		defer fcancel()
		var last uint64
		if len(applied) > 0 {
			last = applied[len(applied)-1].GetSeq()
		}
		err := Follow(fctx, js, stream, prefix, "room-0", last, func(c *pb.ListenResponse) error {
			applied = append(applied, c)
			if len(applied) == until {
				fcancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("follow: %v", err)
		}
	}
	write(0, 90)
	follow(20) // stops after 20 changes of room-0
	write(90, 90)
	// What Listen delivers for room-0 from the start.
	after := uint64(0)
	ls, err := client.Listen(ctx, &pb.ListenRequest{ResourceId: "room-0", AfterSeq: &after})
	if err != nil {
		t.Fatal(err)
	}
	var want []*pb.ListenResponse
	for len(want) < room0 {
		m, err := ls.Recv()
		if err == io.EOF || err != nil {
			t.Fatalf("listen after %d changes: %v", len(want), err)
		}
		want = append(want, m)
	}
	follow(len(want)) // resumes after the seq last applied
	if len(applied) != len(want) {
		t.Fatalf("applied %d changes, Listen delivered %d", len(applied), len(want))
	}
	for i := range want {
		if !proto.Equal(applied[i], want[i]) {
			t.Fatalf("change %d: applied %v, Listen delivered %v", i, applied[i], want[i])
		}
	}
}
