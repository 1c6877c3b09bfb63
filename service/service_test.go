package service_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
)

func TestReserve(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	before := time.Now().Add(-time.Second)
	in := &pb.Reservation{
		Id: "client-sent-id-is-ignored", UserId: "alice", ResourceId: "room-101", Note: "late arrival",
		Start: &timestamppb.Timestamp{Seconds: base.Unix(), Nanos: 123456789}, End: at(2),
	}
	got := reserve(t, c, in)

	id, err := uuid.Parse(got.GetId())
	if err != nil || id.Version() != 7 || got.GetId() != id.String() {
		t.Errorf("id = %q, want a canonical UUIDv7", got.GetId())
	}
	if got.GetStatus() != pb.ReservationStatus_RESERVATION_STATUS_PENDING {
		t.Errorf("status = %v, want PENDING when none is asked for", got.GetStatus())
	}
	if got.GetVersion() != 1 {
		t.Errorf("version = %d, want 1", got.GetVersion())
	}
	if n := got.GetStart().GetNanos(); n != 123456000 {
		t.Errorf("start nanos = %d, want 123456000 (truncated to microseconds)", n)
	}
	if got.GetUserId() != "alice" || got.GetResourceId() != "room-101" || got.GetNote() != "late arrival" || !got.GetEnd().AsTime().Equal(at(2).AsTime()) {
		t.Errorf("reserved %v, want the fields asked for", got)
	}
	if ca := got.GetCreatedAt().AsTime(); ca.Before(before) || !ca.Equal(got.GetUpdatedAt().AsTime()) {
		t.Errorf("created_at %v, updated_at %v: want now and equal", ca, got.GetUpdatedAt().AsTime())
	}
	stored, err := c.Get(ctxFor(t), &pb.GetRequest{Id: got.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if !protoEqual(stored.GetReservation(), got) {
		t.Errorf("Get = %v, want what Reserve returned, %v", stored.GetReservation(), got)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE op = 1 AND reservation_id = ? AND resource_version = 1", got.GetId()); n != 1 {
		t.Errorf("%d create changes recorded, want 1", n)
	}

	for _, st := range []pb.ReservationStatus{pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED, pb.ReservationStatus_RESERVATION_STATUS_BLOCKED} {
		r := booking("room-102", 0, 1)
		r.Status = st
		r.Start, r.End = at(float64(st)), at(float64(st)+1)
		if got := reserve(t, c, r); got.GetStatus() != st {
			t.Errorf("asked for %v, got %v", st, got.GetStatus())
		}
	}
}

func TestReserveRejectsBadInput(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	long := strings.Repeat("x", 65)
	cases := []struct {
		name   string
		r      *pb.Reservation
		fields []string
	}{
		{"missing reservation", nil, []string{"reservation"}},
		{"empty", &pb.Reservation{}, []string{"reservation.start", "reservation.end", "reservation.user_id", "reservation.resource_id"}},
		{"user too long", &pb.Reservation{UserId: long, ResourceId: "r", Start: at(0), End: at(1)}, []string{"reservation.user_id"}},
		{"resource with NUL", &pb.Reservation{UserId: "u", ResourceId: "r\x00", Start: at(0), End: at(1)}, []string{"reservation.resource_id"}},
		{"user with newline", &pb.Reservation{UserId: "u\n", ResourceId: "r", Start: at(0), End: at(1)}, []string{"reservation.user_id"}},
		{"start equals end", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(1), End: at(1)}, []string{"reservation.end"}},
		{"end before start", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(2), End: at(1)}, []string{"reservation.end"}},
		{"equal after truncation", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: &timestamppb.Timestamp{Seconds: base.Unix(), Nanos: 999}}, []string{"reservation.end"}},
		{"bad nanos", &pb.Reservation{UserId: "u", ResourceId: "r", Start: &timestamppb.Timestamp{Seconds: base.Unix(), Nanos: -1}, End: at(1)}, []string{"reservation.start"}},
		{"year 10000", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: &timestamppb.Timestamp{Seconds: 253402300800}}, []string{"reservation.end"}},
		{"before year 1000", &pb.Reservation{UserId: "u", ResourceId: "r", Start: timestamppb.New(time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC)), End: at(1)}, []string{"reservation.start"}},
		{"longer than allowed", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: at(367 * 24)}, []string{"reservation.end"}},
		{"note too long", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: at(1), Note: strings.Repeat("n", 4097)}, []string{"reservation.note"}},
		{"note with NUL", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: at(1), Note: "a\x00b"}, []string{"reservation.note"}},
		{"unknown status", &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: at(1), Status: 42}, []string{"reservation.status"}},
	}
	for _, tc := range cases {
		_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: tc.r})
		st := wantCode(t, err, codes.InvalidArgument)
		got := badFields(st)
		slices.Sort(got)
		want := slices.Clone(tc.fields)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: bad fields %v, want %v (%s)", tc.name, got, want, st.Message())
		}
	}
	// A note of exactly 4 KiB with tabs and line breaks is fine.
	ok := booking("r", 0, 1)
	ok.Note = strings.Repeat("a\tb\n", 1024)
	reserve(t, c, ok)
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Errorf("%d rows stored, want only the valid one", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes"); n != 1 {
		t.Errorf("%d changes stored, want only the valid one's", n)
	}
}

func TestOverlapEdges(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	existing := reserve(t, c, booking("room", 10, 12)) // [10h, 12h)
	us := time.Microsecond.Hours()
	cases := []struct {
		name     string
		from, to float64
		conflict bool
	}{
		{"adjacent before", 8, 10, false},
		{"adjacent after", 12, 14, false},
		{"identical", 10, 12, true},
		{"contained", 10.5, 11.5, true},
		{"containing", 9, 13, true},
		{"overlapping start", 9, 10.5, true},
		{"overlapping end", 11.5, 13, true},
		{"one microsecond at the start", 9, 10 + us, true},
		{"one microsecond at the end", 12 - us, 13, true},
	}
	for _, tc := range cases {
		_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("room", tc.from, tc.to)})
		if !tc.conflict {
			if err != nil {
				t.Errorf("%s: %v, want success", tc.name, err)
			}
			continue
		}
		st := wantCode(t, err, codes.FailedPrecondition)
		ei := conflictInfo(st)
		if ei.GetReason() != "RESERVATION_CONFLICT" || !strings.Contains(ei.GetMetadata()["conflict_ids"], existing.GetId()) {
			t.Errorf("%s: error info %v, want RESERVATION_CONFLICT naming %s", tc.name, ei, existing.GetId())
		}
	}
	// The same window on another resource, or a resource id differing only in case or a
	// trailing space, is free.
	for _, other := range []string{"room-2", "Room", "room "} {
		reserve(t, c, booking(other, 10, 12))
	}
	if n := overlaps(t, db); n != 0 {
		t.Errorf("%d overlapping pairs stored", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE resource_id = 'room'"); n != 3 {
		t.Errorf("room holds %d reservations, want 3 (existing and the two adjacent)", n)
	}
}

func TestConflictNamesEveryReservationInTheWay(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	var ids []string
	for h := 0; h < 12; h++ {
		ids = append(ids, reserve(t, c, booking("hall", float64(h), float64(h+1))).GetId())
	}
	_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("hall", 0.5, 3.5)})
	md := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()
	if md["conflict_count"] != "4" || md["conflicts_truncated"] != "false" || md["conflict_ids"] != strings.Join(ids[:4], ",") {
		t.Errorf("metadata %v, want the 4 reservations from 0h to 4h", md)
	}
	if md["conflict_1_start"] != "2030-03-01T10:00:00Z" || md["conflict_1_end"] != "2030-03-01T11:00:00Z" || md["conflict_1_item"] != "0" {
		t.Errorf("metadata %v: conflict_1 should be the 10:00-11:00 booking", md)
	}
	_, err = c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("hall", 0, 12)})
	md = conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()
	if md["conflict_count"] != "10" || md["conflicts_truncated"] != "true" || md["conflict_9_id"] != ids[9] {
		t.Errorf("metadata %v, want the first 10 of 12, marked truncated", md)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 12 {
		t.Errorf("%d rows, want 12: a conflict writes nothing", n)
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	r := reserve(t, c, booking("desk", 0, 1))
	got, err := c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	conf := got.GetReservation()
	if conf.GetStatus() != pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED || conf.GetVersion() != 2 || !conf.GetUpdatedAt().AsTime().After(r.GetUpdatedAt().AsTime()) {
		t.Errorf("confirmed %v, want CONFIRMED at version 2 with a later updated_at", conf)
	}
	again, err := c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: strings.ToUpper(r.GetId())})
	if err != nil {
		t.Fatal(err)
	}
	if !protoEqual(again.GetReservation(), conf) {
		t.Errorf("second confirm returned %v, want it unchanged: %v", again.GetReservation(), conf)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE reservation_id = ?", r.GetId()); n != 2 {
		t.Errorf("%d changes recorded, want 2 (create, confirm): an idempotent confirm writes nothing", n)
	}

	blocked := booking("desk", 2, 3)
	blocked.Status = pb.ReservationStatus_RESERVATION_STATUS_BLOCKED
	b := reserve(t, c, blocked)
	_, err = c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: b.GetId()})
	wantCode(t, err, codes.FailedPrecondition)

	_, err = c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: uuid.NewString()})
	wantCode(t, err, codes.NotFound)
	for _, bad := range []string{"", "nope", "' OR 1=1 --", r.GetId() + "0", "{" + r.GetId() + "}"} {
		_, err = c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: bad})
		if st := wantCode(t, err, codes.InvalidArgument); !slices.Equal(badFields(st), []string{"id"}) {
			t.Errorf("Confirm(%q): bad fields %v, want [id]", bad, badFields(st))
		}
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	r := reserve(t, c, booking("desk", 0, 1))
	got, err := c.Update(ctxFor(t), &pb.UpdateRequest{Id: r.GetId(), Note: "window seat ☀"})
	if err != nil {
		t.Fatal(err)
	}
	if u := got.GetReservation(); u.GetNote() != "window seat ☀" || u.GetVersion() != 2 || u.GetStatus() != r.GetStatus() || !u.GetStart().AsTime().Equal(r.GetStart().AsTime()) {
		t.Errorf("updated %v, want only the note changed and version 2", u)
	}
	_, err = c.Update(ctxFor(t), &pb.UpdateRequest{Id: r.GetId(), Note: "bad\x01"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.Update(ctxFor(t), &pb.UpdateRequest{Id: uuid.NewString(), Note: "x"})
	wantCode(t, err, codes.NotFound)
	g, _ := c.Get(ctxFor(t), &pb.GetRequest{Id: r.GetId()})
	if g.GetReservation().GetNote() != "window seat ☀" || g.GetReservation().GetVersion() != 2 {
		t.Errorf("stored %v after a rejected update, want the first update kept", g.GetReservation())
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	r := reserve(t, c, booking("court", 0, 1))
	got, err := c.Cancel(ctxFor(t), &pb.CancelRequest{Id: r.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if g := got.GetReservation(); g.GetId() != r.GetId() || g.GetVersion() != 2 || g.GetResourceId() != "court" {
		t.Errorf("cancel returned %v, want the removed reservation at version 2", g)
	}
	_, err = c.Cancel(ctxFor(t), &pb.CancelRequest{Id: r.GetId()})
	wantCode(t, err, codes.NotFound)
	_, err = c.Get(ctxFor(t), &pb.GetRequest{Id: r.GetId()})
	wantCode(t, err, codes.NotFound)
	reserve(t, c, booking("court", 0, 1)) // the window is free again at once
	ops := count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE reservation_id = ? AND op = 3 AND resource_version = 2", r.GetId())
	if ops != 1 {
		t.Errorf("%d delete changes at resource version 2, want 1", ops)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	_, err := c.Get(ctxFor(t), &pb.GetRequest{Id: uuid.NewString()})
	wantCode(t, err, codes.NotFound)
	_, err = c.Get(ctxFor(t), &pb.GetRequest{})
	wantCode(t, err, codes.InvalidArgument)
}
