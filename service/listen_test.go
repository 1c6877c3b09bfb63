package service_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/service"
)

// listen opens a Listen stream and returns it with the seq it starts after.
func listen(t *testing.T, c pb.ReservationServiceClient, req *pb.ListenRequest) (grpc.ServerStreamingClient[pb.ListenResponse], uint64) {
	t.Helper()
	stream, err := c.Listen(ctxFor(t), req)
	if err != nil {
		t.Fatalf("Listen(%v): %v", req, err)
	}
	md, err := stream.Header()
	if err != nil {
		t.Fatalf("Listen(%v) header: %v", req, err)
	}
	v := md.Get(service.AfterSeqHeader)
	if len(v) != 1 {
		t.Fatalf("Listen(%v): header %s is %v", req, service.AfterSeqHeader, v)
	}
	after, err := strconv.ParseUint(v[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return stream, after
}

func recvN(t *testing.T, stream grpc.ServerStreamingClient[pb.ListenResponse], n int) []*pb.ListenResponse {
	t.Helper()
	out := make([]*pb.ListenResponse, n)
	for i := range out {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("change %d of %d: %v", i+1, n, err)
		}
		out[i] = m
	}
	return out
}

func TestListenStreamsEveryWrite(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	c := r.client
	ctx := ctxFor(t)
	before := reserve(t, c, booking("lobby", 0, 1))
	waitUntil(t, "the first change to be sequenced", func() bool { return r.feed.Stats().Head == 1 })
	all, after := listen(t, c, &pb.ListenRequest{})
	if after != 1 {
		t.Fatalf("a listener without after_seq starts after %d, want 1 (the write before it)", after)
	}
	room, _ := listen(t, c, &pb.ListenRequest{ResourceId: "room"})

	made := reserve(t, c, booking("room", 0, 1))
	reserve(t, c, booking("lobby", 1, 2))
	confirmed, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: made.Id})
	if err != nil {
		t.Fatal(err)
	}
	noted, err := c.Update(ctx, &pb.UpdateRequest{Id: made.Id, Note: "window seat"})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := c.Cancel(ctx, &pb.CancelRequest{Id: made.Id})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		seq uint64
		op  pb.ReservationUpdateType
		r   *pb.Reservation
	}{
		{2, pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_CREATE, made},
		{4, pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE, confirmed.Reservation},
		{5, pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE, noted.Reservation},
		{6, pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_DELETE, cancelled.Reservation},
	}
	for i, m := range recvN(t, room, len(want)) {
		w := want[i]
		if m.Seq != w.seq || m.Op != w.op || !proto.Equal(m.Reservation, w.r) || m.CommittedAt == nil {
			t.Errorf("room change %d: %v, want seq %d %v %v", i, m, w.seq, w.op, w.r)
		}
	}
	got := recvN(t, all, 5)
	for i, m := range got {
		if m.Seq != uint64(i+2) {
			t.Errorf("change %d has seq %d, want %d", i, m.Seq, i+2)
		}
	}
	// Resuming replays from the cursor: all of it from 0, the rest from 3.
	replay, _ := listen(t, c, &pb.ListenRequest{AfterSeq: proto.Uint64(0)})
	if first := recvN(t, replay, 6)[0]; !proto.Equal(first.Reservation, before) {
		t.Errorf("replay starts with %v, want %v", first.Reservation, before)
	}
	resumed, after := listen(t, c, &pb.ListenRequest{AfterSeq: proto.Uint64(3)})
	if after != 3 {
		t.Errorf("resumed after %d, want 3", after)
	}
	for i, m := range recvN(t, resumed, 3) {
		if !proto.Equal(m, got[i+2]) {
			t.Errorf("resumed change %d: %v, want %v", i, m, got[i+2])
		}
	}
}

func TestListenBadRequests(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	reserve(t, c, booking("room", 0, 1))
	for _, tc := range []struct {
		req   *pb.ListenRequest
		code  codes.Code
		field string
	}{
		{&pb.ListenRequest{ResourceId: "bad\x00id"}, codes.InvalidArgument, "resource_id"},
		{&pb.ListenRequest{ResourceId: strings.Repeat("r", 65)}, codes.InvalidArgument, "resource_id"},
		{&pb.ListenRequest{AfterSeq: proto.Uint64(2)}, codes.OutOfRange, ""},
		{&pb.ListenRequest{AfterSeq: proto.Uint64(1 << 63)}, codes.OutOfRange, ""},
	} {
		stream, err := c.Listen(ctxFor(t), tc.req)
		if err == nil {
			_, err = stream.Recv()
		}
		st := wantCode(t, err, tc.code)
		if tc.field != "" && strings.Join(badFields(st), ",") != tc.field {
			t.Errorf("Listen(%v) names %v, want %s", tc.req, badFields(st), tc.field)
		}
	}
}

func TestListenWithoutFeedIsUnimplemented(t *testing.T) {
	t.Parallel()
	g := grpc.NewServer()
	service.New(nil, service.Options{Logger: quiet}).Register(g)
	lis := listenLoopback(t)
	go g.Serve(lis)
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewReservationServiceClient(conn).Listen(ctxFor(t), &pb.ListenRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.Unimplemented)
}

// TestSlowListenerIsCutOff: a listener that stops reading falls behind the feed's buffer and
// is ended with RESOURCE_EXHAUSTED, while another keeps pace; resuming from the last seq it
// got, it misses nothing.
func TestSlowListenerIsCutOff(t *testing.T) {
	t.Parallel()
	r := startReplicaWith(t, newDB(t), nil, queue.Options{Buffer: 8})
	// A fixed, small flow-control window, so that the server soon has to wait for the reader.
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slowClient := pb.NewReservationServiceClient(conn)
	slow, _ := listen(t, slowClient, &pb.ListenRequest{})
	fast, _ := listen(t, r.client, &pb.ListenRequest{})

	const n = 300
	note := strings.Repeat("n", 4000) // 300 changes of 4 kB: far more than the window
	var fastGot []*pb.ListenResponse
	for i := range n {
		b := booking("room", float64(i), float64(i+1))
		b.Note = note
		reserve(t, r.client, b)
		fastGot = append(fastGot, recvN(t, fast, 1)...)
	}
	var slowGot []*pb.ListenResponse
	for {
		m, err := slow.Recv()
		if err != nil {
			wantCode(t, err, codes.ResourceExhausted)
			break
		}
		slowGot = append(slowGot, m)
	}
	if len(slowGot) == 0 || len(slowGot) >= n {
		t.Fatalf("slow listener got %d changes before it was cut off, want some but not all %d", len(slowGot), n)
	}
	t.Logf("slow listener got %d of %d changes before it was cut off", len(slowGot), n)
	resumed, _ := listen(t, slowClient, &pb.ListenRequest{AfterSeq: proto.Uint64(slowGot[len(slowGot)-1].Seq)})
	slowGot = append(slowGot, recvN(t, resumed, n-len(slowGot))...)
	for i := range fastGot {
		if fastGot[i].Seq != uint64(i+1) || !proto.Equal(slowGot[i], fastGot[i]) {
			t.Fatalf("change %d: slow listener got seq %d, fast got seq %d, want both %d and equal", i, slowGot[i].Seq, fastGot[i].Seq, i+1)
		}
	}
	if r.feed.Stats().CutOff != 1 {
		t.Errorf("%d listeners cut off, want 1", r.feed.Stats().CutOff)
	}
}

// TestListenEndsWhenTheClientGoesAway: the server notices a listener that cancels, and
// closes its subscription.
func TestListenEndsWhenTheClientGoesAway(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	following(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := r.client.Listen(ctx, &pb.ListenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	if n := r.feed.Stats().Subscribers - ownSubscriptions; n != 1 {
		t.Fatalf("%d subscribers, want 1", n)
	}
	cancel()
	if _, err := stream.Recv(); err == io.EOF || err == nil {
		t.Fatalf("Recv after cancel: %v", err)
	}
	waitUntil(t, "the subscription to close", func() bool { return r.feed.Stats().Subscribers == ownSubscriptions })
}
