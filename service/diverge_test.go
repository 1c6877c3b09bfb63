package service_test

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "reservation/proto/reservation/v1"
	"reservation/service"
)

// diverged reports whether err is OUT_OF_RANGE with the FEED_DIVERGED ErrorInfo.
func diverged(err error) bool {
	st := status.Convert(err)
	if st.Code() != codes.OutOfRange {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == service.FeedDivergedReason && info.GetDomain() == service.ErrorDomain {
			return true
		}
	}
	return false
}

// openListen starts a Listen call; the error, if any, comes with the first Recv.
func openListen(t *testing.T, c pb.ReservationServiceClient, req *pb.ListenRequest) grpc.ServerStreamingClient[pb.ListenResponse] {
	t.Helper()
	stream, err := c.Listen(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// A failover to a replica that lacked the newest changes is played in one database: the
// changes after seq 3 are deleted (lost with the old primary) and new writes take their seqs,
// as the new primary's sequencer continues from its own newest seq. A listener never gets a
// seq that names another change than the one it was given: a live one is cut off with
// FEED_DIVERGED, a cursor of the lost history is refused with FEED_DIVERGED, and a cursor
// both histories share resumes gapless.
func TestFeedNeverLiesAfterLostChanges(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	r := startReplica(t, db, nil)
	c := r.client
	live, after := listen(t, c, &pb.ListenRequest{})
	if after != 0 {
		t.Fatalf("an empty feed starts after seq %d", after)
	}
	for i := range 5 {
		reserve(t, c, booking("lobby", float64(i), float64(i)+1))
	}
	got := recvN(t, live, 5)
	for i, m := range got {
		if m.GetSeq() != uint64(i+1) || m.GetCursor() == "" {
			t.Fatalf("change %d: seq %d cursor %q", i, m.GetSeq(), m.GetCursor())
		}
	}
	// A cursor resumes exactly where after_seq would, verified.
	resumed := openListen(t, c, &pb.ListenRequest{ResumeCursor: got[2].GetCursor()})
	if m := recvN(t, resumed, 2); m[0].GetCursor() != got[3].GetCursor() || m[1].GetCursor() != got[4].GetCursor() {
		t.Fatalf("resumed after seq 3 with %v, want seqs 4 and 5 as given before", m)
	}

	// The failover: seqs 4 and 5 are lost, and two new writes take them.
	if _, err := db.Exec("DELETE FROM reservation_changes WHERE seq > 3"); err != nil {
		t.Fatal(err)
	}
	reserve(t, c, booking("hall", 0, 1))
	reserve(t, c, booking("hall", 1, 2))
	reserve(t, c, booking("hall", 2, 3))

	// The live listener is cut off rather than given seq 6, or seqs 4 and 5 again.
	if m, err := live.Recv(); !diverged(err) {
		t.Fatalf("live listener after the lost changes got %v, %v; want FEED_DIVERGED", m, err)
	}
	// A cursor of the lost history is refused: seq 5 names another change now.
	if m, err := openListen(t, c, &pb.ListenRequest{ResumeCursor: got[4].GetCursor()}).Recv(); !diverged(err) {
		t.Fatalf("resume at the lost seq 5 got %v, %v; want FEED_DIVERGED", m, err)
	}
	// A cursor both histories hold resumes gapless in the new one.
	again := openListen(t, c, &pb.ListenRequest{ResumeCursor: got[2].GetCursor()})
	m := recvN(t, again, 3)
	for i, x := range m {
		if x.GetSeq() != uint64(4+i) || x.GetReservation().GetResourceId() != "hall" {
			t.Fatalf("resumed after seq 3, change %d is seq %d of %s, want seq %d of hall", i, x.GetSeq(), x.GetReservation().GetResourceId(), 4+i)
		}
		if x.GetCursor() == got[3].GetCursor() || x.GetCursor() == got[4].GetCursor() {
			t.Fatalf("the new seq %d has the cursor of the lost change", x.GetSeq())
		}
	}
	// after_seq keeps working, unverified.
	old := uint64(5)
	if m := recvN(t, openListen(t, c, &pb.ListenRequest{AfterSeq: &old}), 1); m[0].GetSeq() != 6 {
		t.Fatalf("after_seq 5 resumed at seq %d", m[0].GetSeq())
	}
}

// A cursor beyond the stored feed is a history this feed lacks; a malformed one, or one given
// with after_seq, is a bad request.
func TestResumeCursorChecks(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	c := startReplica(t, db, nil).client
	live, _ := listen(t, c, &pb.ListenRequest{})
	reserve(t, c, booking("lobby", 0, 1))
	first := recvN(t, live, 1)[0]

	if _, err := db.Exec("DELETE FROM reservation_changes"); err != nil {
		t.Fatal(err)
	}
	if m, err := openListen(t, c, &pb.ListenRequest{ResumeCursor: first.GetCursor()}).Recv(); !diverged(err) {
		t.Fatalf("a cursor beyond the stored feed got %v, %v; want FEED_DIVERGED", m, err)
	}
	zero := uint64(0)
	for _, req := range []*pb.ListenRequest{
		{ResumeCursor: "seq-1"},
		{ResumeCursor: first.GetCursor(), AfterSeq: &zero},
	} {
		if _, err := openListen(t, c, req).Recv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Listen(%v): %v, want INVALID_ARGUMENT", req, err)
		}
	}
}
