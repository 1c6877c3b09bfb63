package service_test

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/repo/repotest"
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
	service.New(service.Capabilities{}, service.Options{Logger: quiet}).Register(g)
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

// TestListenersOfBothResourcesHearAMove: a move from room-a to room-b is one UPDATE, at one
// seq, naming room-b; every listener of room-a (live, and resuming from seq 0 or from a cursor,
// read from the ring and from the database) hears it once, as does a listener of room-b and an
// unfiltered one; a move within room-a is heard once by room-a's listeners and not by room-b's;
// room-c's listener hears neither. A write to each room afterwards shows that nothing else
// came in between.
func TestListenersOfBothResourcesHearAMove(t *testing.T) {
	t.Parallel()
	db, dsn := repotest.NewDB(t)
	r := startReplica(t, db, nil)
	c := r.client
	ctx := ctxFor(t)
	x := reserve(t, c, booking("room-a", 0, 1)) // seq 1
	waitUntil(t, "the first change to be sequenced", func() bool { return r.feed.Stats().Head == 1 })
	live := map[string]grpc.ServerStreamingClient[pb.ListenResponse]{}
	for _, room := range []string{"room-a", "room-b", "room-c", ""} {
		live[room], _ = listen(t, c, &pb.ListenRequest{ResourceId: room})
	}
	within, err := c.Update(ctx, moveTo(x.GetId(), 2, 3, "")) // seq 2
	if err != nil {
		t.Fatal(err)
	}
	across, err := c.Update(ctx, moveTo(x.GetId(), 4, 5, "room-b")) // seq 3
	if err != nil {
		t.Fatal(err)
	}
	if m := across.GetReservation(); m.GetResourceId() != "room-b" || m.GetVersion() != 3 {
		t.Fatalf("moved %v, want version 3 on room-b", m)
	}
	last := map[string]*pb.Reservation{}
	for i, room := range []string{"room-a", "room-b", "room-c"} { // seqs 4, 5, 6
		last[room] = reserve(t, c, booking(room, 10+float64(i), 11+float64(i)))
	}
	waitUntil(t, "every change to be sequenced", func() bool { return r.feed.Stats().Head == 6 })

	type heard struct {
		seq uint64
		op  pb.ReservationUpdateType
		r   *pb.Reservation
	}
	update := pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE
	create := pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_CREATE
	atWithin, atAcross := heard{2, update, within.GetReservation()}, heard{3, update, across.GetReservation()}
	want := map[string][]heard{
		"room-a": {atWithin, atAcross, {4, create, last["room-a"]}},
		"room-b": {atAcross, {5, create, last["room-b"]}},
		"room-c": {{6, create, last["room-c"]}},
		"":       {atWithin, atAcross, {4, create, last["room-a"]}, {5, create, last["room-b"]}, {6, create, last["room-c"]}},
	}
	var moves []*pb.ListenResponse // every listener's message of the move across
	// expect receives up to the last change want names, which every listener hears (a write to
	// its room, or the last write), and compares all it received with want.
	expect := func(who string, stream grpc.ServerStreamingClient[pb.ListenResponse], want []heard) {
		t.Helper()
		var got []*pb.ListenResponse
		for len(got) == 0 || got[len(got)-1].GetSeq() < want[len(want)-1].seq {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("%s: after %d changes: %v", who, len(got), err)
			}
			got = append(got, m)
		}
		if len(got) != len(want) {
			t.Errorf("%s: heard %d changes, want %d", who, len(got), len(want))
		}
		for i, m := range got {
			if w := want[min(i, len(want)-1)]; m.GetSeq() != w.seq || m.GetOp() != w.op || !proto.Equal(m.GetReservation(), w.r) || m.GetCursor() == "" {
				t.Errorf("%s: change %d is seq %d %v %v, want seq %d %v %v", who, i, m.GetSeq(), m.GetOp(), m.GetReservation(), w.seq, w.op, w.r)
			}
			if m.GetSeq() == atAcross.seq {
				moves = append(moves, m)
			}
		}
	}
	for room, stream := range live {
		expect(fmt.Sprintf("live listener of %q", room), stream, want[room])
	}
	// Resuming from seq 0 reads from this replica's ring, which holds every change.
	fromRing, _ := listen(t, c, &pb.ListenRequest{ResourceId: "room-a", AfterSeq: proto.Uint64(0)})
	first := recvN(t, fromRing, 1)[0]
	if first.GetSeq() != 1 || !proto.Equal(first.GetReservation(), x) {
		t.Fatalf("room-a from seq 0 starts with %v, want the create of %v", first, x)
	}
	expect("room-a from seq 0, from the ring", fromRing, want["room-a"])
	// A replica started now holds none of them in its ring: it replays them from the database.
	cold := replicasOn(t, dsn, 1, func() reservation.Locker { return nil })[0]
	for _, req := range []*pb.ListenRequest{
		{ResourceId: "room-a", AfterSeq: proto.Uint64(0)},
		{ResourceId: "room-a", ResumeCursor: first.GetCursor()},
		{ResourceId: "room-b", AfterSeq: proto.Uint64(1)},
		{ResourceId: "room-c", AfterSeq: proto.Uint64(0)},
		{AfterSeq: proto.Uint64(1)},
	} {
		stream, _ := listen(t, cold.client, req)
		room := req.GetResourceId()
		if req.AfterSeq != nil && *req.AfterSeq == 0 && room != "room-c" {
			recvN(t, stream, 1) // the create of x, checked above
		}
		expect(fmt.Sprintf("%v, from the database", req), stream, want[room])
	}
	if len(moves) != 8 {
		t.Errorf("the move was heard %d times by the 8 listeners it concerns", len(moves))
	}
	for _, m := range moves[1:] {
		if !proto.Equal(m, moves[0]) {
			t.Errorf("the move heard as %v and as %v", m, moves[0])
		}
	}
}
