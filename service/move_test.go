package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/service"
)

// moveTo is an Update that moves id to [from, to) hours from base, on resource when not "";
// the mask names exactly what it sets.
func moveTo(id string, from, to float64, resource string) *pb.UpdateRequest {
	req := &pb.UpdateRequest{Id: id, Start: at(from), End: at(to), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"start", "end"}}}
	if resource != "" {
		req.ResourceId = resource
		req.UpdateMask.Paths = append(req.UpdateMask.Paths, "resource_id")
	}
	return req
}

// storedRow is a reservation as its row stands, read by SQL.
type storedRow struct {
	ResourceID string     `db:"resource_id"`
	Start      time.Time  `db:"start_at"`
	End        time.Time  `db:"end_at"`
	Status     int        `db:"status"`
	Version    int64      `db:"version"`
	ExpiresAt  *time.Time `db:"expires_at"`
	PoolID     string     `db:"pool_id"`
	Note       string     `db:"note"`
}

func rowOf(t *testing.T, db *sqlx.DB, id string) storedRow {
	t.Helper()
	var r storedRow
	if err := db.Get(&r, "SELECT resource_id, start_at, end_at, status, version, expires_at, pool_id, note FROM reservations WHERE id = ?", id); err != nil {
		t.Fatalf("row of %s: %v", id, err)
	}
	return r
}

// the row's window is [from, to) hours from base on resource.
func (r storedRow) is(resource string, from, to float64) bool {
	return r.ResourceID == resource && r.Start.Equal(at(from).AsTime()) && r.End.Equal(at(to).AsTime())
}

// A move onto a window that overlaps its own old window succeeds (cal.com #8350), bumps the
// version by one, keeps the status, and the feed carries exactly one UPDATE with the new row.
func TestMoveOverItsOwnWindow(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	r := booking("room", 0, 1)
	r.Status = pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED
	r.Note = "standup"
	got := reserve(t, c, r)
	l := collect(t, c)
	l.wait(t, 1) // the create

	resp, err := c.Update(ctx, moveTo(got.GetId(), 0.5, 1.5, ""))
	if err != nil {
		t.Fatalf("moving by 30 minutes over its own window: %v", err)
	}
	moved := resp.GetReservation()
	if moved.GetVersion() != 2 || moved.GetStatus() != pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED || moved.GetNote() != "standup" ||
		!moved.GetStart().AsTime().Equal(at(0.5).AsTime()) || !moved.GetEnd().AsTime().Equal(at(1.5).AsTime()) || moved.GetResourceId() != "room" {
		t.Errorf("moved = %v, want version 2, CONFIRMED, the note kept, from 0.5h to 1.5h on room", moved)
	}
	if !moved.GetCreatedAt().AsTime().Equal(got.GetCreatedAt().AsTime()) {
		t.Errorf("created_at %v changed to %v", got.GetCreatedAt().AsTime(), moved.GetCreatedAt().AsTime())
	}
	if row := rowOf(t, db, got.GetId()); !row.is("room", 0.5, 1.5) || row.Version != 2 {
		t.Errorf("stored %+v, want the new window at version 2", row)
	}
	stored, err := c.Get(ctx, &pb.GetRequest{Id: got.GetId()})
	if err != nil || !protoEqual(stored.GetReservation(), moved) {
		t.Errorf("Get = %v, %v; want what Update returned, %v", stored.GetReservation(), err, moved)
	}
	changes := l.wait(t, 2)
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes"); n != 2 {
		t.Errorf("%d changes recorded, want the create and one update", n)
	}
	if ch := changes[1]; ch.GetOp() != pb.ReservationUpdateType_RESERVATION_UPDATE_TYPE_UPDATE || !protoEqual(ch.GetReservation(), moved) {
		t.Errorf("feed: %v %v, want one UPDATE with %v", ch.GetOp(), ch.GetReservation(), moved)
	}
	// The old window's free part is free; the new one is taken (the cache learnt the move).
	reserve(t, c, booking("room", 0, 0.5))
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 1.25, 2)})
	if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetMetadata()["conflict_ids"] != got.GetId() {
		t.Errorf("Reserve in the new window: %v, want a conflict with %s", ei, got.GetId())
	}
	// A start alone, an end alone: the other end stays.
	if resp, err = c.Update(ctx, &pb.UpdateRequest{Id: got.GetId(), End: at(3), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"end"}}}); err != nil {
		t.Fatal(err)
	}
	if row := rowOf(t, db, got.GetId()); !row.is("room", 0.5, 3) || row.Version != 3 {
		t.Errorf("after moving the end alone: %+v, want 0.5h to 3h at version 3", row)
	}
	if resp, err = c.Update(ctx, &pb.UpdateRequest{Id: got.GetId(), Start: at(2), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"start"}}}); err != nil {
		t.Fatal(err)
	}
	if row := rowOf(t, db, got.GetId()); !row.is("room", 2, 3) || row.Version != 4 {
		t.Errorf("after moving the start alone: %+v, want 2h to 3h at version 4", row)
	}
}

// A move onto a window another reservation holds is RESERVATION_CONFLICT, as a Reserve's
// conflict is, and changes nothing.
func TestMoveOntoATakenWindowChangesNothing(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	a := reserve(t, c, booking("room", 0, 1))
	b := reserve(t, c, booking("room", 2, 3))
	changes := count(t, db, "SELECT COUNT(*) FROM reservation_changes")
	_, err := c.Update(ctx, moveTo(b.GetId(), 0.5, 2.5, ""))
	st := wantCode(t, err, codes.FailedPrecondition)
	ei := conflictInfo(st)
	md := ei.GetMetadata()
	if ei.GetReason() != service.ConflictReason || ei.GetDomain() != service.ErrorDomain || md["conflict_ids"] != a.GetId() ||
		md["conflict_count"] != "1" || md["conflict_0_item"] != "0" || md["conflict_0_start"] != reservation.FormatTime(at(0).AsTime()) {
		t.Errorf("ErrorInfo %v, want %s naming %s alone", ei, service.ConflictReason, a.GetId())
	}
	if row := rowOf(t, db, b.GetId()); !row.is("room", 2, 3) || row.Version != 1 {
		t.Errorf("after a refused move: %+v, want the old window at version 1", row)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes"); n != changes {
		t.Errorf("%d changes recorded, want %d: a refused move records none", n, changes)
	}
	// Touching the other's end is no overlap.
	if _, err := c.Update(ctx, moveTo(b.GetId(), 1, 2, "")); err != nil {
		t.Errorf("moving to touch the other's end: %v", err)
	}
}

// A move to another resource frees the old one, takes the pool of the new one, moves both
// resources' versions on, and is refused when the new resource is taken, disabled, or not in
// a strict catalogue.
func TestMoveToAnotherResource(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	for _, r := range []*pb.Resource{{Id: "room-a", PoolId: "floor-1"}, {Id: "room-b", PoolId: "floor-2"}, {Id: "room-c", Disabled: true}} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	a := reserve(t, c, booking("room-a", 0, 1))
	other := reserve(t, c, booking("room-b", 0, 1))
	_, err := c.Update(ctx, moveTo(a.GetId(), 0, 1, "room-b"))
	if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetReason() != service.ConflictReason || ei.GetMetadata()["conflict_ids"] != other.GetId() {
		t.Errorf("moving onto the other's window: %v, want a conflict naming %s", ei, other.GetId())
	}
	_, err = c.Update(ctx, moveTo(a.GetId(), 0, 1, "room-c"))
	if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetReason() != reservation.ReasonResourceDisabled || ei.GetMetadata()["resource_id"] != "room-c" {
		t.Errorf("moving onto a disabled resource: %v, want %s naming room-c", ei, reservation.ReasonResourceDisabled)
	}
	if row := rowOf(t, db, a.GetId()); !row.is("room-a", 0, 1) || row.Version != 1 || row.PoolID != "floor-1" {
		t.Errorf("after refused moves: %+v, want room-a 0h to 1h at version 1", row)
	}
	versions := func() (a, b int64) {
		var vs []int64
		if err := db.Select(&vs, "SELECT version FROM resources WHERE id IN ('room-a', 'room-b') ORDER BY id"); err != nil {
			t.Fatal(err)
		}
		return vs[0], vs[1]
	}
	va, vb := versions()
	// A long stay: the new resource's longest span must cover it for later overlap checks.
	resp, err := c.Update(ctx, moveTo(a.GetId(), 1, 30, "room-b"))
	if err != nil {
		t.Fatalf("moving to a free window of room-b: %v", err)
	}
	if m := resp.GetReservation(); m.GetResourceId() != "room-b" || m.GetPoolId() != "floor-2" || m.GetVersion() != 2 {
		t.Errorf("moved = %v, want room-b, pool floor-2, version 2", m)
	}
	if row := rowOf(t, db, a.GetId()); !row.is("room-b", 1, 30) || row.PoolID != "floor-2" {
		t.Errorf("stored %+v, want room-b from 1h to 30h in floor-2", row)
	}
	if na, nb := versions(); na != va+1 || nb != vb+1 {
		t.Errorf("resource versions %d, %d after the move; want %d, %d", na, nb, va+1, vb+1)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE reservation_id = ? AND op = 2 AND resource_id = 'room-b'", a.GetId()); n != 1 {
		t.Errorf("%d UPDATE changes recorded under room-b, want 1", n)
	}
	reserve(t, c, booking("room-a", 0, 1)) // its old window is free
	// Deep inside the long stay: found through room-b's widened longest span.
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room-b", 29, 29.5)})
	if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetMetadata()["conflict_ids"] != a.GetId() {
		t.Errorf("Reserve inside the moved stay: %v, want a conflict with %s", ei, a.GetId())
	}
	if n := overlaps(t, db); n != 0 {
		t.Errorf("%d overlapping pairs", n)
	}
}

// A moved hold keeps its expiry and stays PENDING.
func TestMoveKeepsAHoldsExpiry(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 1), Hold: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	hold := resp.GetReservation()
	up, err := c.Update(ctx, moveTo(hold.GetId(), 4, 5, "hall"))
	if err != nil {
		t.Fatal(err)
	}
	m := up.GetReservation()
	if m.GetStatus() != pb.ReservationStatus_RESERVATION_STATUS_PENDING || !m.GetExpiresAt().AsTime().Equal(hold.GetExpiresAt().AsTime()) {
		t.Errorf("moved hold %v, want PENDING expiring at %v", m, hold.GetExpiresAt().AsTime())
	}
	if row := rowOf(t, db, hold.GetId()); row.ExpiresAt == nil || !row.ExpiresAt.Equal(hold.GetExpiresAt().AsTime()) || !row.is("hall", 4, 5) {
		t.Errorf("stored %+v, want hall 4h to 5h expiring at %v", row, hold.GetExpiresAt().AsTime())
	}
}

// A move is weighed on a resource of capacity 2 as a Reserve is: by the peak of what overlaps
// at each instant, its own old window left out.
func TestMoveOnCapacity(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "garage", Capacity: 2}}); err != nil {
		t.Fatal(err)
	}
	x := reserve(t, c, booking("garage", 0, 2))
	y := reserve(t, c, booking("garage", 1, 3))
	z := reserve(t, c, booking("street", 0, 1))
	if _, err := c.Update(ctx, moveTo(z.GetId(), 0, 1, "garage")); err != nil {
		t.Errorf("moving beside one car: %v", err)
	}
	_, err := c.Update(ctx, moveTo(z.GetId(), 1, 2, ""))
	if md := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata(); md["conflict_count"] != "2" {
		t.Errorf("moving where two cars are: %v, want a conflict naming both", md)
	}
	// y moves over its own window: beside x alone at each instant.
	if _, err := c.Update(ctx, moveTo(y.GetId(), 1.5, 3.5, "")); err != nil {
		t.Errorf("moving y over its own window, beside x: %v", err)
	}
	_, err = c.Update(ctx, moveTo(z.GetId(), 1.25, 2, ""))
	if md := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata(); md["conflict_count"] != "2" {
		t.Errorf("moving z where x and y fill the garage: %v, want a conflict naming both", md)
	}
	// x moves over its own window: beside z, then y, one at a time.
	if _, err := c.Update(ctx, moveTo(x.GetId(), 0.25, 1.75, "")); err != nil {
		t.Errorf("moving x over its own window: %v", err)
	}
	var peak int
	if err := db.Get(&peak, "SELECT COUNT(*) FROM reservations WHERE resource_id = 'garage' AND start_at <= ? AND end_at > ?", at(0.5).AsTime(), at(0.5).AsTime()); err != nil {
		t.Fatal(err)
	}
	if peak != 2 {
		t.Errorf("%d reservations at 1.75h, want 2", peak)
	}
}

// The refusals of an Update that moves: each names its field or says what is wrong.
func TestMoveRefusals(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	r := reserve(t, c, booking("room", 2, 3))
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
	for _, tc := range []struct {
		name   string
		req    *pb.UpdateRequest
		code   codes.Code
		fields []string
	}{
		{"an unknown mask path", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start", "colour"), Start: at(1)}, codes.InvalidArgument, []string{"update_mask"}},
		{"a path named twice", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("end", "end"), End: at(4)}, codes.InvalidArgument, []string{"update_mask"}},
		{"start named, not set", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start")}, codes.InvalidArgument, []string{"start"}},
		{"both given, end before start", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start", "end"), Start: at(5), End: at(4)}, codes.InvalidArgument, []string{"end"}},
		{"the end alone, at the stored start", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("end"), End: at(2)}, codes.InvalidArgument, []string{"end"}},
		{"the start alone, past the stored end", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start"), Start: at(4)}, codes.InvalidArgument, []string{"start"}},
		{"longer than a reservation may last", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("end"), End: at(2 + 367*24)}, codes.InvalidArgument, []string{"end"}},
		{"a year not stored", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start"), Start: timestamppb.New(time.Date(900, 1, 1, 0, 0, 0, 0, time.UTC))}, codes.InvalidArgument, []string{"start"}},
		{"a bad resource id", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("resource_id"), ResourceId: ""}, codes.InvalidArgument, []string{"resource_id"}},
		{"another version", &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start"), Start: at(1), ExpectedVersion: 7}, codes.Aborted, nil},
		{"an unknown reservation", moveTo("0193a4ab-6318-7baf-a7ed-a35f0ef10590", 0, 1, ""), codes.NotFound, nil},
	} {
		_, err := c.Update(ctx, tc.req)
		st := wantCode(t, err, tc.code)
		if got := badFields(st); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %v (%v), want %v", tc.name, got, st.Message(), tc.fields)
		}
	}
	if row := rowOf(t, db, r.GetId()); !row.is("room", 2, 3) || row.Version != 1 {
		t.Errorf("after refused moves: %+v, want the old window at version 1", row)
	}
	// The version the caller saw: accepted.
	if _, err := c.Update(ctx, &pb.UpdateRequest{Id: r.GetId(), UpdateMask: mask("start"), Start: at(1), ExpectedVersion: 1}); err != nil {
		t.Errorf("a move at the version expected: %v", err)
	}
}

// A lapsed hold cannot be moved: FAILED_PRECONDITION, and nothing changes. The store's clock
// is the test's, so the hold lapses without waiting.
func TestMoveOfALapsedHold(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	db := newDB(t)
	api := service.New(service.All(repo.New(db, repo.Options{Logger: quiet, Now: clock}), nil), service.Options{Logger: quiet})
	ctx := context.Background()
	resp, err := api.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 1), Hold: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	_, err = api.Update(ctx, moveTo(resp.GetReservation().GetId(), 1, 2, ""))
	wantCode(t, err, codes.FailedPrecondition)
	if row := rowOf(t, db, resp.GetReservation().GetId()); !row.is("room", 0, 1) || row.Version != 1 {
		t.Errorf("after moving a lapsed hold: %+v, want it as it was", row)
	}
}

// With auth on, a user moves their own reservations only: another's is NOT_FOUND, as for
// every other write; an admin moves anyone's.
func TestMoveFollowsOwnership(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	api := service.New(service.All(repo.New(db, repo.Options{Logger: quiet}), nil), service.Options{Logger: quiet})
	alice := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "alice"})
	bob := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "bob"})
	admin := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "root", Admin: true})
	resp, err := api.Reserve(alice, &pb.ReserveRequest{Reservation: booking("room", 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetReservation().GetId()
	_, err = api.Update(bob, moveTo(id, 1, 2, ""))
	wantCode(t, err, codes.NotFound)
	if row := rowOf(t, db, id); !row.is("room", 0, 1) {
		t.Errorf("after bob's move: %+v, want it unmoved", row)
	}
	if _, err := api.Update(alice, moveTo(id, 1, 2, "")); err != nil {
		t.Errorf("alice moving hers: %v", err)
	}
	if _, err := api.Update(admin, moveTo(id, 2, 3, "hall")); err != nil {
		t.Errorf("an admin moving alice's: %v", err)
	}
	if row := rowOf(t, db, id); !row.is("hall", 2, 3) || row.Version != 3 {
		t.Errorf("stored %+v, want hall 2h to 3h at version 3", row)
	}
}

// Under a strict catalogue, a move to a resource that is not in it is NOT_FOUND.
func TestMoveToAResourceNotInAStrictCatalogue(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	store := repo.New(db, repo.Options{Logger: quiet, StrictCatalogue: true})
	api := service.New(service.All(store, nil), service.Options{Logger: quiet})
	ctx := context.Background()
	if _, err := api.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := api.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = api.Update(ctx, moveTo(resp.GetReservation().GetId(), 0, 1, "nowhere"))
	wantCode(t, err, codes.NotFound)
	if n := count(t, db, "SELECT COUNT(*) FROM resources WHERE id = 'nowhere'"); n != 0 {
		t.Errorf("the move created resource nowhere")
	}
}

// Over the HTTP gateway a move is a PATCH whose JSON names the paths in updateMask, as
// protojson spells a FieldMask (lowerCamelCase, comma-separated); a conflict answers as a
// Reserve's does over HTTP (409, naming what is in the way).
func TestMoveOverHTTP(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	a := reserve(t, r.client, booking("room", 0, 1))
	b := reserve(t, r.client, booking("room", 2, 3))
	code, body := r.httpJSON(t, "PATCH", "/v1/reservations/"+a.GetId(), map[string]any{
		"start": at(4).AsTime(), "end": at(5).AsTime(), "resourceId": "hall", "updateMask": "start,end,resourceId",
	})
	var moved struct {
		Reservation struct {
			ResourceID string `json:"resource_id"`
			Version    string `json:"version"`
		} `json:"reservation"`
	}
	if err := json.Unmarshal(body, &moved); code != http.StatusOK || err != nil || moved.Reservation.ResourceID != "hall" || moved.Reservation.Version != "2" {
		t.Errorf("PATCH move: %d %s, want 200 with the reservation on hall at version 2", code, body)
	}
	reserveCode, _ := r.httpJSON(t, "POST", "/v1/reservations", map[string]any{"reservation": map[string]any{
		"userId": "alice", "resourceId": "hall", "start": at(4).AsTime(), "end": at(5).AsTime()}})
	code, body = r.httpJSON(t, "PATCH", "/v1/reservations/"+b.GetId(), map[string]any{
		"start": at(4.5).AsTime(), "end": at(5.5).AsTime(), "resourceId": "hall", "updateMask": "start,end,resourceId",
	})
	if code != reserveCode || code != http.StatusConflict || !strings.Contains(string(body), service.ConflictReason) || !strings.Contains(string(body), a.GetId()) {
		t.Errorf("PATCH onto a taken window: %d %s, want %d (a Reserve's conflict: %d) naming %s", code, body, http.StatusConflict, reserveCode, a.GetId())
	}
}
