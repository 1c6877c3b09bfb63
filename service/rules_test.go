package service_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	"reservation/cache"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/server"
	"reservation/service"
)

// clockedReplica serves db with the store's and the API's clock stopped at now, so that a
// rule's bound can be hit to the microsecond.
func clockedReplica(t *testing.T, db *sqlx.DB, now time.Time) *replica {
	clock := func() time.Time { return now }
	return startReplicaOpts(t, db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Store: repo.Options{Now: clock}, API: service.Options{Now: clock},
		Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries}, Logger: quiet,
	})
}

// ruleInfo returns the RULE_VIOLATION ErrorInfo of a FAILED_PRECONDITION, failing the test
// when err is something else.
func ruleInfo(t *testing.T, what string, err error) map[string]string {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		t.Errorf("%s: %v, want FAILED_PRECONDITION", what, err)
		return nil
	}
	ei := conflictInfo(st)
	if ei.GetReason() != reservation.ReasonRuleViolation || ei.GetDomain() != service.ErrorDomain {
		t.Errorf("%s: ErrorInfo %v, want reason %s", what, ei, reservation.ReasonRuleViolation)
		return nil
	}
	return ei.GetMetadata()
}

func window(resource string, start time.Time, d time.Duration) *pb.Reservation {
	return &pb.Reservation{UserId: "alice", ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(start.Add(d))}
}

// TestResourceRulesRoundTrip: PutResource stores the buffers and rules, GetResource and
// ListResources return them, and a bad one is INVALID_ARGUMENT naming resource.<field>.
func TestResourceRulesRoundTrip(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)
	in := &pb.Resource{Id: "room", BufferBefore: durationpb.New(5 * time.Minute), BufferAfter: durationpb.New(15 * time.Minute),
		MinDuration: durationpb.New(30 * time.Minute), MaxDuration: durationpb.New(4 * time.Hour),
		MinNotice: durationpb.New(time.Hour), MaxAdvance: durationpb.New(90 * 24 * time.Hour)}
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: in}); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetResource(ctx, &pb.GetResourceRequest{Id: "room"})
	if err != nil {
		t.Fatal(err)
	}
	r := got.GetResource()
	for name, pair := range map[string][2]*durationpb.Duration{
		"buffer_before": {r.GetBufferBefore(), in.GetBufferBefore()}, "buffer_after": {r.GetBufferAfter(), in.GetBufferAfter()},
		"min_duration": {r.GetMinDuration(), in.GetMinDuration()}, "max_duration": {r.GetMaxDuration(), in.GetMaxDuration()},
		"min_notice": {r.GetMinNotice(), in.GetMinNotice()}, "max_advance": {r.GetMaxAdvance(), in.GetMaxAdvance()},
	} {
		if pair[0].AsDuration() != pair[1].AsDuration() {
			t.Errorf("GetResource %s = %s, want %s", name, pair[0].AsDuration(), pair[1].AsDuration())
		}
	}
	list, err := c.ListResources(ctx, &pb.ListResourcesRequest{})
	if err != nil || len(list.GetResources()) != 1 || list.GetResources()[0].GetMinNotice().AsDuration() != time.Hour {
		t.Errorf("ListResources = %v, %v: want the room with its rules", list, err)
	}
	// A resource without rules has none on the wire.
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "plain"}}); err != nil {
		t.Fatal(err)
	}
	if p, _ := c.GetResource(ctx, &pb.GetResourceRequest{Id: "plain"}); p.GetResource().GetBufferAfter() != nil || p.GetResource().GetMaxAdvance() != nil {
		t.Errorf("a resource without rules: %v", p.GetResource())
	}

	bad := &pb.Resource{Id: "bad", BufferBefore: durationpb.New(-time.Second), BufferAfter: &durationpb.Duration{Seconds: 1, Nanos: -5},
		MinDuration: durationpb.New(2 * time.Hour), MaxDuration: durationpb.New(time.Hour),
		MinNotice: durationpb.New(reservation.MaxRule + time.Second), MaxAdvance: durationpb.New(-time.Hour)}
	_, err = c.PutResource(ctx, &pb.PutResourceRequest{Resource: bad})
	fields := badFields(wantCode(t, err, codes.InvalidArgument))
	for _, f := range []string{"resource.buffer_before", "resource.buffer_after", "resource.max_duration", "resource.min_notice", "resource.max_advance"} {
		if !slices.Contains(fields, f) {
			t.Errorf("PutResource with bad rules names %v, not %s", fields, f)
		}
	}
	if _, err := c.GetResource(ctx, &pb.GetResourceRequest{Id: "bad"}); status.Code(err) != codes.NotFound {
		t.Errorf("the refused resource was stored: %v", err)
	}
}

// TestRuleEdges books at exactly each rule's bound, and one microsecond past it, through gRPC
// with the clock stopped: the bound is admitted, past it is FAILED_PRECONDITION with a
// RULE_VIOLATION naming the rule, its limit, the resource and the item. BLOCKED reservations
// are exempt from notice and advance, not from the length bounds. A batch with one item
// refused writes nothing.
func TestRuleEdges(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	now := base.Add(-24 * time.Hour)
	c := clockedReplica(t, db, now).client
	ctx := ctxFor(t)
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room",
		MinDuration: durationpb.New(30 * time.Minute), MaxDuration: durationpb.New(2 * time.Hour),
		MinNotice: durationpb.New(time.Hour), MaxAdvance: durationpb.New(30 * 24 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	const µs = time.Microsecond
	day := func(n int) time.Time { return now.Add(time.Duration(n) * 24 * time.Hour) } // a free day for each case
	for _, tc := range []struct {
		name   string
		r      *pb.Reservation
		rule   string // "" for admitted
		limit  string
		status pb.ReservationStatus
	}{
		{"min_duration exactly", window("room", day(1), 30*time.Minute), "", "", 0},
		{"min_duration less one µs", window("room", day(2), 30*time.Minute-µs), reservation.RuleMinDuration, "30m0s", 0},
		{"max_duration exactly", window("room", day(3), 2*time.Hour), "", "", 0},
		{"max_duration and one µs", window("room", day(4), 2*time.Hour+µs), reservation.RuleMaxDuration, "2h0m0s", 0},
		{"min_notice less one µs", window("room", now.Add(time.Hour-µs), 30*time.Minute), reservation.RuleMinNotice, "1h0m0s", 0},
		{"min_notice exactly", window("room", now.Add(time.Hour), time.Hour), "", "", 0},
		{"max_advance exactly", window("room", day(30), time.Hour), "", "", 0},
		{"max_advance and one µs", window("room", day(30).Add(2*time.Hour+µs), time.Hour), reservation.RuleMaxAdvance, "720h0m0s", 0},
		{"BLOCKED inside the notice", window("room", now.Add(time.Minute), 30*time.Minute), "", "", pb.ReservationStatus_RESERVATION_STATUS_BLOCKED},
		{"BLOCKED past the advance", window("room", day(60), time.Hour), "", "", pb.ReservationStatus_RESERVATION_STATUS_BLOCKED},
		{"BLOCKED longer than max_duration", window("room", day(61), 3*time.Hour), reservation.RuleMaxDuration, "2h0m0s", pb.ReservationStatus_RESERVATION_STATUS_BLOCKED},
	} {
		tc.r.Status = tc.status
		_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: tc.r})
		if tc.rule == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		md := ruleInfo(t, tc.name, err)
		if md != nil && (md["rule"] != tc.rule || md["limit"] != tc.limit || md["resource_id"] != "room" || md["item"] != "0") {
			t.Errorf("%s: metadata %v, want rule %s, limit %s, resource room, item 0", tc.name, md, tc.rule, tc.limit)
		}
	}

	before := count(t, db, "SELECT COUNT(*) FROM reservations")
	_, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{
		window("room", day(10), time.Hour), window("other", day(10), time.Hour), window("room", day(11), 3*time.Hour)}})
	if md := ruleInfo(t, "batch with item 2 too long", err); md != nil && (md["item"] != "2" || md["rule"] != reservation.RuleMaxDuration) {
		t.Errorf("batch: metadata %v, want item 2 and max_duration", md)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != before {
		t.Errorf("the refused batch wrote %d reservations", n-before)
	}
}

// TestPastWindowsRefused: a window whose end is not after now is INVALID_ARGUMENT on its end
// (reservation.end, reservations[i].end, a move's end), BLOCKED ones excepted; one that ends a
// microsecond after now is admitted.
func TestPastWindowsRefused(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	now := base.Add(-24 * time.Hour)
	c := clockedReplica(t, db, now).client
	ctx := ctxFor(t)
	_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", now.Add(-time.Hour), time.Hour)})
	if f := badFields(wantCode(t, err, codes.InvalidArgument)); !slices.Equal(f, []string{"reservation.end"}) {
		t.Errorf("a window ending now: fields %v, want reservation.end", f)
	}
	_, err = c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{
		window("room", now.Add(time.Hour), time.Hour), window("room", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour)}})
	if f := badFields(wantCode(t, err, codes.InvalidArgument)); !slices.Equal(f, []string{"reservations[1].end"}) {
		t.Errorf("a batch with a window in 2020: fields %v, want reservations[1].end", f)
	}
	if _, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", now.Add(-time.Hour), time.Hour+time.Microsecond)}); err != nil {
		t.Errorf("a window ending one µs after now: %v", err)
	}
	blocked := window("room", now.Add(-3*time.Hour), time.Hour)
	blocked.Status = pb.ReservationStatus_RESERVATION_STATUS_BLOCKED
	made, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: blocked})
	if err != nil {
		t.Fatalf("a BLOCKED window in the past: %v", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 2 {
		t.Errorf("%d reservations stored, want 2", n)
	}

	// A move's new end: refused for a reservation that is not BLOCKED; a BLOCKED one goes on
	// to the store.
	later := reserve(t, c, window("room", now.Add(5*time.Hour), time.Hour))
	move := func(id string) error {
		_, err := c.Update(ctx, &pb.UpdateRequest{Id: id, Start: timestamppb.New(now.Add(-2 * time.Hour)), End: timestamppb.New(now),
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"start", "end"}}})
		return err
	}
	if f := badFields(wantCode(t, move(later.GetId()), codes.InvalidArgument)); !slices.Equal(f, []string{"end"}) {
		t.Errorf("a move into the past: fields %v, want end", f)
	}
	if st, _ := status.FromError(move(made.GetReservation().GetId())); slices.Contains(badFields(st), "end") {
		t.Errorf("a move of a BLOCKED window into the past was refused on end: %v", st.Err())
	}
}

// TestPastWindowsAllowed: with AllowPast, a window in 2020 is booked.
func TestPastWindowsAllowed(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	r := startReplicaOpts(t, db, nil, server.Options{GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", API: service.Options{AllowPast: true}, Logger: quiet})
	if _, err := r.client.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: window("room", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour)}); err != nil {
		t.Errorf("AllowPast: a window in 2020: %v", err)
	}
}

// TestBuffersThroughGRPC: with a 15-minute after-buffer, a booking that ends at 10:00 blocks
// a 10:10 start (RESERVATION_CONFLICT naming it) and not a 10:15 one; a 5-minute
// before-buffer adds to it. The same holds in a batch, and on another replica: its cache knows
// no buffers and proposes nothing for a conflict they alone make (its write path refuses it),
// while it still refuses, weighed with the buffers, a window whose booked part overlaps.
// Raising a buffer over what is booked is refused.
func TestBuffersThroughGRPC(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	a, b := startReplica(t, db, nil), startReplica(t, db, nil)
	following(t, a)
	following(t, b)
	ctx := ctxFor(t)
	c := a.client
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room", BufferAfter: durationpb.New(15 * time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	ten := base.Add(time.Hour) // 10:00
	first := reserve(t, c, window("room", ten.Add(-time.Hour), time.Hour))
	waitUntil(t, "replica b's cache to hold the reservation", func() bool { return b.taken.Stats().Entries == 1 })
	for _, r := range []*replica{a, b} {
		_, err := r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", ten.Add(10*time.Minute), time.Hour)})
		if id := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()["conflict_0_id"]; id != first.GetId() {
			t.Errorf("a 10:10 start names %q, want %s", id, first.GetId())
		}
	}
	if n := b.taken.Stats().Refused; n != 0 {
		t.Errorf("replica b's cache proposed %d refusals of a buffer-only conflict, want 0", n)
	}
	_, err := b.client.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", ten.Add(-10*time.Minute), time.Hour)})
	if id := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()["conflict_0_id"]; id != first.GetId() {
		t.Errorf("a window over 10:00 names %q, want %s", id, first.GetId())
	}
	if n := b.taken.Stats().Refused; n != 1 {
		t.Errorf("replica b's cache proposed %d refusals of an overlap, want 1", n)
	}
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", ten.Add(-2*time.Hour), 55*time.Minute)}) // ends 8:55, less than 15m before 9:00
	wantCode(t, err, codes.FailedPrecondition)
	_, err = c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{
		window("room", ten.Add(3*time.Hour), time.Hour), window("room", ten.Add(4*time.Hour+14*time.Minute), time.Hour)}})
	if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetMetadata()["conflict_0_item"] != "1" {
		t.Errorf("a batch of two 14 minutes apart: %v, want item 1 in the way of item 0", ei)
	}
	second := reserve(t, c, window("room", ten.Add(15*time.Minute), time.Hour)) // 10:15 to 11:15
	// Raising the after-buffer to 16 minutes would make the two meet: refused.
	_, err = c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room", BufferAfter: durationpb.New(16 * time.Minute)}})
	wantCode(t, err, codes.FailedPrecondition)
	// A before-buffer of 5 minutes: the next one starts no sooner than 11:35.
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room", BufferBefore: durationpb.New(5 * time.Minute), BufferAfter: durationpb.New(10 * time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Reserve(ctx, &pb.ReserveRequest{Reservation: window("room", ten.Add(time.Hour+29*time.Minute), time.Hour)})
	if id := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()["conflict_0_id"]; id != second.GetId() {
		t.Errorf("an 11:29 start names %q, want %s", id, second.GetId())
	}
	reserve(t, b.client, window("room", ten.Add(time.Hour+30*time.Minute), time.Hour))
	if n := repotest.BlockedOverlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of blocked windows overlap", n)
	}
}

// TestPoolBuffersAndRules: a pool's units with an after-buffer are taken with it counted; a
// window every unit's rules refuse is RULE_VIOLATION, not POOL_FULL; a unit whose rules refuse
// the window is passed over for one whose rules admit it.
func TestPoolBuffersAndRules(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	put := func(r *pb.Resource) {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"u1", "u2"} {
		put(&pb.Resource{Id: id, PoolId: "deluxe", BufferAfter: durationpb.New(15 * time.Minute)})
		put(&pb.Resource{Id: "s-" + id, PoolId: "short", MinDuration: durationpb.New(time.Hour)})
	}
	put(&pb.Resource{Id: "m-long", PoolId: "mixed", MinDuration: durationpb.New(time.Hour)})
	put(&pb.Resource{Id: "m-short", PoolId: "mixed"})
	ten := base.Add(time.Hour)
	pooled := func(pool string, start time.Time, d time.Duration) (*pb.Reservation, error) {
		r := window("", start, d)
		r.PoolId = pool
		resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
		return resp.GetReservation(), err
	}
	for _, step := range []struct {
		start time.Time
		want  string // the unit, or "" for POOL_FULL
	}{
		{ten.Add(-time.Hour), "u1"},
		{ten.Add(10 * time.Minute), "u2"}, // u1's booking ends at 10:00 and blocks to 10:15
		{ten.Add(10 * time.Minute), ""},
		{ten.Add(15 * time.Minute), "u1"},
	} {
		got, err := pooled("deluxe", step.start, time.Hour)
		switch {
		case step.want == "":
			if ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition)); ei.GetReason() != reservation.ReasonPoolFull {
				t.Errorf("a third 10:10 booking: %v, want POOL_FULL", ei)
			}
		case err != nil || got.GetResourceId() != step.want:
			t.Errorf("pool booking at %s: %v %v, want unit %s", step.start, got.GetResourceId(), err, step.want)
		}
	}
	_, err := pooled("short", ten, 30*time.Minute)
	if md := ruleInfo(t, "a 30-minute booking of a pool whose units last an hour at least", err); md != nil && (md["rule"] != reservation.RuleMinDuration || md["resource_id"] != "s-u1") {
		t.Errorf("metadata %v, want min_duration of s-u1", md)
	}
	if got, err := pooled("mixed", ten, 30*time.Minute); err != nil || got.GetResourceId() != "m-short" {
		t.Errorf("a 30-minute booking of the mixed pool: %v %v, want m-short", got.GetResourceId(), err)
	}
	if n := repotest.BlockedOverlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of blocked windows overlap", n)
	}
}

// TestFreeSlotsBuffers: a free window is where a new booking's blocked window meets none
// booked: busy windows widened by before+after on each side; with capacity 2, by the peak
// over blocked windows.
func TestFreeSlotsBuffers(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)
	for _, r := range []*pb.Resource{
		{Id: "room", BufferBefore: durationpb.New(5 * time.Minute), BufferAfter: durationpb.New(15 * time.Minute)},
		{Id: "lot", Capacity: 2, BufferAfter: durationpb.New(30 * time.Minute)},
	} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, c, booking("room", 1, 2)) // 10:00 to 11:00
	reserve(t, c, booking("lot", 1, 2))  // blocks 10:00 to 11:30
	reserve(t, c, booking("lot", 2, 3))  // 11:00 to 12:00, blocks to 12:30: two at 11:00 to 11:30
	slots := func(id string) []string {
		resp, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: id, Start: at(0), End: at(5)})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range resp.GetFree() {
			out = append(out, fmt.Sprintf("%s-%s %d", w.GetStart().AsTime().Format("15:04"), w.GetEnd().AsTime().Format("15:04"), w.GetAvailable()))
		}
		return out
	}
	// Before 10:00, a booking must end 20 minutes early (its after and 10:00's before); after
	// 11:00 start 20 minutes late.
	if got, want := slots("room"), []string{"09:00-09:40 1", "11:20-14:00 1"}; !slices.Equal(got, want) {
		t.Errorf("room: %v, want %v", got, want)
	}
	// A booking inside [x, y) blocks to y+30m. Two places up to 09:30 (its blocked window
	// ends by 10:00); one until 10:30, which blocks to 11:00; none from 10:30 to 11:30, as
	// two are there from 11:00 to 11:30; one from 11:30 to 12:30, the second's blocked window
	// reaching 12:30; two after.
	if got, want := slots("lot"), []string{"09:00-09:30 2", "09:30-10:30 1", "11:30-12:30 1", "12:30-14:00 2"}; !slices.Equal(got, want) {
		t.Errorf("lot: %v, want %v", got, want)
	}
}

// TestBuffersUnderConcurrency: writers on three replicas race to book adjacent windows, alone
// and in pairs, of a resource with a 15-minute after-buffer, after a booking that ends at 10:00.
// Checked in SQL: no two stored reservations' blocked windows overlap (so nothing starts
// before 10:15); every acknowledged reservation is stored; and every refusal was true, each
// refused window meeting a stored reservation's blocked window (nothing is cancelled, so what
// was in its way is still there). The check itself is shown to fail on two rows 10 minutes
// apart inserted straight into the table.
func TestBuffersUnderConcurrency(t *testing.T) {
	t.Parallel()
	for name, newLocker := range concurrentLockers() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			prefix := locktest.Prefix(t, locktest.Client(t))
			replicas := replicasOn(t, dsn, 3, func() reservation.Locker { return newLocker(t, prefix) })
			ctx := ctxFor(t)
			after := 15 * time.Minute
			if _, err := replicas[0].client.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room", BufferAfter: durationpb.New(after)}}); err != nil {
				t.Fatal(err)
			}
			ten := base.Add(time.Hour)
			reserve(t, replicas[0].client, window("room", ten.Add(-time.Hour), time.Hour))

			// Windows of 20 to 40 minutes starting on 5-minute steps from 10:00 over 20 hours:
			// many touch or come within the buffer of each other, and the day fills late in the run.
			const writers, ops = 24, 12
			var mu sync.Mutex
			var acked []string
			var refused []*pb.Reservation
			outcomes := map[codes.Code]int{}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 18))
					c := replicas[w%len(replicas)].client
					pick := func() *pb.Reservation {
						return window("room", ten.Add(time.Duration(rng.IntN(240))*5*time.Minute), time.Duration(20+10*rng.IntN(3))*time.Minute)
					}
					for range ops {
						cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						rs := []*pb.Reservation{pick()}
						var made []*pb.Reservation
						var err error
						if rng.IntN(4) == 0 {
							rs = append(rs, pick())
							var resp *pb.ReserveBatchResponse
							resp, err = c.ReserveBatch(cctx, &pb.ReserveBatchRequest{Reservations: rs})
							made = resp.GetReservations()
						} else {
							var resp *pb.ReserveResponse
							resp, err = c.Reserve(cctx, &pb.ReserveRequest{Reservation: rs[0]})
							if err == nil {
								made = append(made, resp.GetReservation())
							}
						}
						cancel()
						mu.Lock()
						outcomes[status.Code(err)]++
						for _, r := range made {
							acked = append(acked, r.GetId())
						}
						if status.Code(err) == codes.FailedPrecondition && len(rs) == 1 {
							refused = append(refused, rs[0])
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			t.Logf("outcomes %v: %d reservations acknowledged, %d single refusals", outcomes, len(acked), len(refused))
			if len(outcomes) != 2 || outcomes[codes.OK] == 0 || outcomes[codes.FailedPrecondition] == 0 {
				t.Errorf("outcomes %v: want bookings and refusals, nothing else", outcomes)
			}
			if n := repotest.BlockedOverlaps(t, db); n != 0 {
				t.Errorf("%d pairs of stored reservations' blocked windows overlap", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE resource_id = 'room' AND start_at > ? AND start_at < ?", ten, ten.Add(after)); n != 0 {
				t.Errorf("%d reservations start within the buffer after 10:00", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != len(acked)+1 {
				t.Errorf("%d reservations stored, %d acknowledged and the first", n, len(acked))
			}
			for _, r := range refused {
				if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE resource_id = 'room' AND start_at < ? AND end_at > ?",
					r.GetEnd().AsTime().Add(after), r.GetStart().AsTime().Add(-after)); n == 0 {
					t.Errorf("the refusal of %s to %s was not true: nothing stored blocks it", r.GetStart().AsTime(), r.GetEnd().AsTime())
				}
			}

			// The check finds what it looks for: two rows 10 minutes apart, written past the service.
			if _, err := db.ExecContext(ctx, "INSERT INTO resources (id, version, max_span_us, created_at, buffer_after_us) VALUES ('probe', 1, 3600000000, ?, ?)", ten, after.Microseconds()); err != nil {
				t.Fatal(err)
			}
			for i, start := range []time.Time{ten.Add(-time.Hour), ten.Add(10 * time.Minute)} {
				if _, err := db.ExecContext(ctx, `INSERT INTO reservations (id, user_id, resource_id, status, start_at, end_at, note, created_at, updated_at, version)
					VALUES (?, 'u', 'probe', 1, ?, ?, '', ?, ?, 1)`, fmt.Sprintf("00000000-0000-0000-0000-00000000000%d", i), start, start.Add(time.Hour), ten, ten); err != nil {
					t.Fatal(err)
				}
			}
			if n := repotest.BlockedOverlaps(t, db); n != 1 {
				t.Errorf("BlockedOverlaps found %d pairs in two rows 10 minutes apart with a 15-minute buffer, want 1", n)
			}
			if n := overlaps(t, db); n != 0 {
				t.Errorf("the probe's rows overlap as booked (%d): the check above would prove nothing of buffers", n)
			}
		})
	}
}

// TestBufferedFreeSlotsAgainstBruteForce: 40 random resources of capacity 1 to 3 with buffers
// of 0 to 2 slots before and after, each with up to 20 bookings of up to 12 slots (those the
// buffers refuse are not booked), some held, some cancelled. Five FreeSlots queries each, over
// gRPC, must answer what a scan of the bookings finds at 15-minute slot granularity: a slot s
// can be booked when every slot of [s, s+before+after] holds fewer than the capacity of the
// bookings' windows [start, end+before+after) (every blocked window moved by the same
// before-buffer), and its places left are the fewest over those slots.
func TestBufferedFreeSlotsAgainstBruteForce(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	rng := rand.New(rand.NewPCG(18, 7))
	const layouts = 40
	var windowsChecked, buffered int
	for l := range layouts {
		id := fmt.Sprintf("buf-%02d", l)
		capacity, before, after := 1+rng.IntN(3), rng.IntN(3), rng.IntN(3)
		gap := before + after
		if gap > 0 {
			buffered++
		}
		res := &pb.Resource{Id: id, Capacity: int32(capacity),
			BufferBefore: durationpb.New(time.Duration(before) * slotLen), BufferAfter: durationpb.New(time.Duration(after) * slotLen)}
		if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: res}); err != nil {
			t.Fatal(err)
		}
		booked := bookRandomly(t, r.client, rng, rng.IntN(21), 12, func(b *pb.Reservation) { b.ResourceId = id })
		shifted := make([]int, daySlots+8) // blocked windows over each slot, moved by the before-buffer
		for _, b := range booked {
			from, to := int(b.GetStart().AsTime().Sub(base)/slotLen), int(b.GetEnd().AsTime().Sub(base)/slotLen)
			for s := from; s < to+gap; s++ {
				shifted[s]++
			}
		}
		if m := slices.Max(shifted); m > capacity {
			t.Fatalf("layout %d: %d blocked windows at once on capacity %d", l, m, capacity)
		}
		used := make([]int, daySlots) // the most blocked windows a booking of slot s meets
		for s := range used {
			used[s] = slices.Max(shifted[s : s+gap+1])
		}
		for range 5 {
			from, to, minDur := randomQuery(rng)
			want := bruteFree(id, capacity, used, from, to, minDur)
			resp, err := r.client.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: id, Start: timestamppb.New(slotTime(from)), End: timestamppb.New(slotTime(to)), MinDuration: durationpb.New(minDur)})
			if err != nil {
				t.Fatal(err)
			}
			if got := windows(resp, id); !slices.Equal(got, want) {
				t.Fatalf("layout %d, capacity %d, buffers %d+%d slots, booked %v, slots %d-%d, min %s:\ngot  %v\nwant %v", l, capacity, before, after, spell(booked), from, to, minDur, got, want)
			}
			windowsChecked += len(want)
		}
	}
	t.Logf("%d layouts, %d with buffers, %d windows checked", layouts, buffered, windowsChecked)
	if buffered == 0 || windowsChecked < layouts {
		t.Errorf("the layouts should have buffers and many windows")
	}
}
