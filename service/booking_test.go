package service_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
)

func TestHoldThenConfirm(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)
	before := time.Now()
	resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 1), Hold: durationpb.New(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Reservation
	exp := h.GetExpiresAt().AsTime()
	if h.Status != pb.ReservationStatus_RESERVATION_STATUS_PENDING || exp.Before(before.Add(10*time.Minute)) || exp.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("hold %v: want PENDING, expiring 10 minutes after the call", h)
	}
	if _, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0.5, 2)}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("booking over a live hold: %v, want FAILED_PRECONDITION", err)
	}
	conf, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: h.Id})
	if err != nil || conf.Reservation.ExpiresAt != nil || conf.Reservation.Status != pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED {
		t.Fatalf("confirm: %v, %v; want CONFIRMED without expires_at", conf, err)
	}
}

// TestHoldLapsesWhileACompetitorWaits: a competing Reserve queued behind the resource's lock
// while the hold is live succeeds once the hold has lapsed; confirming the hold then fails,
// and the reaper's DELETE reaches listeners.
func TestHoldLapsesWhileACompetitorWaits(t *testing.T) {
	t.Parallel()
	locker := lock.NewLocal(20 * time.Second)
	r := startReplica(t, newDB(t), locker)
	ctx := ctxFor(t)
	feed, _ := listen(t, r.client, &pb.ListenRequest{})
	resp, err := r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 0, 2), Hold: durationpb.New(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	hold := resp.Reservation

	unlock, err := locker.Lock(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var got *pb.ReserveResponse
	go func() {
		var err error
		got, err = r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room", 1, 3)})
		done <- err
	}()
	time.Sleep(time.Until(hold.ExpiresAt.AsTime()) + 50*time.Millisecond)
	unlock(ctx)
	if err := <-done; err != nil {
		t.Fatalf("the competitor after the hold lapsed: %v", err)
	}
	_, err = r.client.Confirm(ctx, &pb.ConfirmRequest{Id: hold.Id})
	if code := status.Code(err); code != codes.FailedPrecondition && code != codes.NotFound {
		t.Fatalf("confirming a lapsed hold: %v, want FAILED_PRECONDITION (or NOT_FOUND once reaped)", err)
	}
	want := map[string]pb.ReservationUpdateType{}
	for range 3 {
		m := recvN(t, feed, 1)[0]
		want[m.Reservation.Id+" "+m.Op.String()] = m.Op
	}
	for _, k := range []string{hold.Id + " RESERVATION_UPDATE_TYPE_CREATE", got.Reservation.Id + " RESERVATION_UPDATE_TYPE_CREATE", hold.Id + " RESERVATION_UPDATE_TYPE_DELETE"} {
		if _, ok := want[k]; !ok {
			t.Errorf("feed lacks %s; got %v", k, want)
		}
	}
}

func TestBookingBadInput(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	many := make([]*pb.Reservation, 101)
	for i := range many {
		many[i] = booking("r", float64(i), float64(i+1))
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"hold too short", func() error {
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1), Hold: durationpb.New(500 * time.Millisecond)})
			return err
		}, "hold"},
		{"hold too long", func() error {
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1), Hold: durationpb.New(25 * time.Hour)})
			return err
		}, "hold"},
		{"empty hold", func() error {
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1), Hold: &durationpb.Duration{}})
			return err
		}, "hold"},
		{"malformed hold", func() error {
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1), Hold: &durationpb.Duration{Seconds: 5, Nanos: -1}})
			return err
		}, "hold"},
		{"blocked hold", func() error {
			b := booking("r", 0, 1)
			b.Status = pb.ReservationStatus_RESERVATION_STATUS_BLOCKED
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: b, Hold: durationpb.New(time.Minute)})
			return err
		}, "reservation.status"},
		{"long request id", func() error {
			_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1), RequestId: strings.Repeat("k", 65)})
			return err
		}, "request_id"},
		{"empty batch", func() error {
			_, err := c.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{})
			return err
		}, "reservations"},
		{"batch too large", func() error {
			_, err := c.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: many})
			return err
		}, "reservations"},
		{"bad batch item", func() error {
			_, err := c.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{booking("r", 0, 1), booking("r", 3, 2)}})
			return err
		}, "reservations[1].end"},
		{"negative expected version", func() error {
			_, err := c.Confirm(ctxFor(t), &pb.ConfirmRequest{Id: "01a204ab-6318-7baf-a7ed-a35f0ef10590", ExpectedVersion: -1})
			return err
		}, "expected_version"},
		{"free slots window too long", func() error {
			_, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: "r", Start: at(0), End: at(367 * 24)})
			return err
		}, "end"},
		{"free slots end before start", func() error {
			_, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: "r", Start: at(2), End: at(1)})
			return err
		}, "end"},
		{"free slots without resource", func() error {
			_, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{Start: at(0), End: at(1)})
			return err
		}, "resource_id"},
		{"free slots negative minimum", func() error {
			_, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: "r", Start: at(0), End: at(1), MinDuration: durationpb.New(-time.Minute)})
			return err
		}, "min_duration"},
	} {
		st := wantCode(t, tc.call(), codes.InvalidArgument)
		if got := strings.Join(badFields(st), ","); got != tc.field {
			t.Errorf("%s: fields %s, want %s (%s)", tc.name, got, tc.field, st.Message())
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Errorf("%d reservations written by bad requests", n)
	}
}

func TestRequestIDMakesReserveIdempotent(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	req := &pb.ReserveRequest{Reservation: booking("room", 0, 1), RequestId: "checkout-42"}
	first, err := c.Reserve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Reserve(ctx, req)
	if err != nil || !proto.Equal(first, again) {
		t.Fatalf("retry: %v, %v; want the first response %v", again, err, first)
	}
	// Status UNKNOWN and PENDING are the same parameters.
	same := proto.Clone(req).(*pb.ReserveRequest)
	same.Reservation.Status = pb.ReservationStatus_RESERVATION_STATUS_PENDING
	if again, err := c.Reserve(ctx, same); err != nil || again.Reservation.Id != first.Reservation.Id {
		t.Fatalf("retry with the status spelled out: %v, %v", again, err)
	}
	other := proto.Clone(req).(*pb.ReserveRequest)
	other.Reservation.Note = "different"
	st := wantCode(t, func() error { _, err := c.Reserve(ctx, other); return err }(), codes.InvalidArgument)
	if f := badFields(st); len(f) != 1 || f[0] != "request_id" {
		t.Fatalf("reused id with other parameters: fields %v", f)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes"); n != 1 {
		t.Fatalf("%d changes, want 1", n)
	}

	// A conflict is an outcome too: the retry meets it again, even once the way is clear.
	blocked := &pb.ReserveRequest{Reservation: booking("room", 0.5, 2), RequestId: "checkout-43"}
	_, err1 := c.Reserve(ctx, blocked)
	if _, err := c.Cancel(ctx, &pb.CancelRequest{Id: first.Reservation.Id}); err != nil {
		t.Fatal(err)
	}
	_, err2 := c.Reserve(ctx, blocked)
	st1, st2 := wantCode(t, err1, codes.FailedPrecondition), wantCode(t, err2, codes.FailedPrecondition)
	if st1.Message() != st2.Message() || conflictInfo(st2).GetMetadata()["conflict_0_id"] != first.Reservation.Id {
		t.Fatalf("retry of a conflict: %v, want the first conflict %v", st2, st1)
	}
}

// TestConcurrentDuplicatesMakeOneReservation: many calls at once with one request id, on
// two replicas, make one reservation, and all get it.
func TestConcurrentDuplicatesMakeOneReservation(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	replicas := []*replica{startReplica(t, db, nil), startReplica(t, db, nil)}
	ids := make(chan string, 16)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			resp, err := replicas[i%2].client.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("room", 0, 1), RequestId: "same"})
			if err != nil {
				t.Errorf("call %d: %v", i, err)
				return
			}
			ids <- resp.Reservation.Id
		})
	}
	wg.Wait()
	close(ids)
	var first string
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("calls got reservations %s and %s", first, id)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
}

func TestReserveBatch(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	existing := reserve(t, c, booking("room", 10, 12))
	trip := []*pb.Reservation{booking("room", 0, 2), booking("parking", 0, 48)}
	resp, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: trip, RequestId: "trip-1", Hold: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Reservations {
		if r.ResourceId != trip[i].ResourceId || r.ExpiresAt == nil || r.Id == "" {
			t.Errorf("item %d: %v, want a hold on %s", i, r, trip[i].ResourceId)
		}
	}
	again, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: trip, RequestId: "trip-1", Hold: durationpb.New(time.Hour)})
	if err != nil || !proto.Equal(resp, again) {
		t.Fatalf("retry of the batch: %v, %v", again, err)
	}

	// Items 1 and 3 are in the way of a stored reservation and of item 2: nothing is written.
	_, err = c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{
		booking("hall", 0, 1), booking("room", 11, 13), booking("hall", 5, 7), booking("hall", 6, 8),
	}})
	info := conflictInfo(wantCode(t, err, codes.FailedPrecondition)).GetMetadata()
	if info["conflict_count"] != "2" || info["conflict_0_item"] != "1" || info["conflict_0_id"] != existing.Id || info["conflict_1_item"] != "3" {
		t.Fatalf("conflicts %v: want item 1 against %s and item 3 against item 2", info, existing.Id)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE resource_id = 'hall'"); n != 0 {
		t.Fatalf("%d reservations of a rejected batch were written", n)
	}
}

// TestCrossingBatchesNeverDeadlock: batches over the same resources, listed in opposite and
// random orders, run at once through the Redis lock. None deadlocks, no two stored
// reservations overlap, and every batch is stored whole or not at all.
func TestCrossingBatchesNeverDeadlock(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	prefix := locktest.Prefix(t, locktest.Client(t))
	var replicas []*replica
	for range 2 {
		locker := lock.NewRedis(locktest.Client(t), lock.RedisOptions{Prefix: prefix, Wait: 20 * time.Second, Logger: quiet})
		replicas = append(replicas, startReplica(t, db, locker))
	}
	resources := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcome := map[codes.Code]int{}
	sizes := map[string]int{}
	for w := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range 10 {
				tag := fmt.Sprintf("w%d-%d", w, i)
				var items []*pb.Reservation
				for _, j := range rng.Perm(len(resources))[:2+rng.IntN(3)] {
					from := float64(rng.IntN(40))
					b := booking(resources[j], from, from+1+float64(rng.IntN(3)))
					b.Note = tag
					items = append(items, b)
				}
				_, err := replicas[w%2].client.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: items})
				mu.Lock()
				outcome[status.Code(err)]++
				if err == nil {
					sizes[tag] = len(items)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("outcomes: %v", outcome)
	if len(outcome) != 2 || outcome[codes.OK] == 0 || outcome[codes.FailedPrecondition] == 0 {
		t.Fatalf("outcomes %v: want only successes and conflicts, some of each", outcome)
	}
	if n := overlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of stored reservations overlap", n)
	}
	var stored []struct {
		Tag string `db:"note"`
		N   int    `db:"n"`
	}
	if err := db.Select(&stored, "SELECT note, COUNT(*) AS n FROM reservations GROUP BY note"); err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(sizes) {
		t.Errorf("%d batches stored, %d acknowledged", len(stored), len(sizes))
	}
	for _, s := range stored {
		if sizes[s.Tag] != s.N {
			t.Errorf("batch %s: %d of its %d reservations stored", s.Tag, s.N, sizes[s.Tag])
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)
	r := reserve(t, c, booking("room", 0, 1))
	_, err := c.Update(ctx, &pb.UpdateRequest{Id: r.Id, Note: "x", ExpectedVersion: 2})
	wantCode(t, err, codes.Aborted)
	_, err = c.Confirm(ctx, &pb.ConfirmRequest{Id: r.Id, ExpectedVersion: 5})
	wantCode(t, err, codes.Aborted)
	up, err := c.Update(ctx, &pb.UpdateRequest{Id: r.Id, Note: "x", ExpectedVersion: 1})
	if err != nil || up.Reservation.Version != 2 {
		t.Fatalf("update at the expected version: %v, %v", up, err)
	}
	_, err = c.Cancel(ctx, &pb.CancelRequest{Id: r.Id, ExpectedVersion: 1})
	wantCode(t, err, codes.Aborted)
	got, err := c.Get(ctx, &pb.GetRequest{Id: r.Id})
	if err != nil || got.Reservation.Version != 2 || got.Reservation.Note != "x" {
		t.Fatalf("after refused writes: %v, %v; want version 2", got, err)
	}
	if _, err := c.Cancel(ctx, &pb.CancelRequest{Id: r.Id, ExpectedVersion: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestFreeSlots(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)
	reserve(t, c, booking("room", 1, 2))
	reserve(t, c, booking("room", 2, 3.5))
	reserve(t, c, booking("room", 4, 6))
	reserve(t, c, booking("other", 0, 10))
	resp, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: "room", Start: at(0), End: at(8), MinDuration: durationpb.New(45 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	want := []*pb.TimeWindow{{Start: at(0), End: at(1), Available: 1}, {Start: at(6), End: at(8), Available: 1}} // 3.5-4 is too short
	if len(resp.Free) != len(want) {
		t.Fatalf("free %v, want %v", resp.Free, want)
	}
	for i := range want {
		if !proto.Equal(resp.Free[i], want[i]) {
			t.Fatalf("free %v, want %v", resp.Free, want)
		}
	}
	all, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: "nowhere", Start: at(0), End: at(8)})
	if err != nil || len(all.Free) != 1 || !proto.Equal(all.Free[0], &pb.TimeWindow{Start: at(0), End: at(8), Available: 1}) {
		t.Fatalf("free slots of an unknown resource: %v, %v; want the whole window", all, err)
	}
}
