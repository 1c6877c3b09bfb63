package repo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

func poolBooking(pool string, fromH, toH int) *reservation.Reservation {
	r := window("", fromH, toH)
	r.PoolID = pool
	return r
}

func TestPoolAssignsUnitsInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	for _, id := range []string{"room-3", "room-1", "room-2", "room-4"} {
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, PoolID: "deluxe", Disabled: id == "room-4"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// room-1 is taken directly; its reservation records its pool.
	direct, err := s.Reserve(ctx, reservation.Book(window("room-1", 10, 12)))
	if err != nil {
		t.Fatal(err)
	}
	if direct[0].PoolID != "deluxe" {
		t.Errorf("a direct booking of a unit records pool %q, want deluxe", direct[0].PoolID)
	}
	var got []string
	for range 2 {
		out, err := s.Reserve(ctx, reservation.Book(poolBooking("deluxe", 11, 13)))
		if err != nil {
			t.Fatal(err)
		}
		if out[0].PoolID != "deluxe" {
			t.Errorf("pool booking records pool %q", out[0].PoolID)
		}
		got = append(got, out[0].ResourceID)
	}
	if got[0] != "room-2" || got[1] != "room-3" {
		t.Errorf("units assigned %v, want room-2 then room-3 (room-1 taken, by id)", got)
	}
	// room-4 is disabled: the pool is full.
	_, err = s.Reserve(ctx, reservation.Book(poolBooking("deluxe", 11, 14)))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.ESTATE || e.Reason != reservation.ReasonPoolFull {
		t.Fatalf("a booking of a full pool: %v, want ESTATE %s", err, reservation.ReasonPoolFull)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 3 {
		t.Errorf("%d reservations stored, want 3: POOL_FULL writes nothing", n)
	}
	// A batch of two from the pool at once, and a retry with its request id.
	b := reservation.Booking{Reservations: []*reservation.Reservation{poolBooking("deluxe", 20, 22), poolBooking("deluxe", 21, 23)}, RequestID: "req-1"}
	first, err := s.Reserve(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if first[0].ResourceID != "room-1" || first[1].ResourceID != "room-2" {
		t.Errorf("batch got %s and %s, want room-1 and room-2", first[0].ResourceID, first[1].ResourceID)
	}
	again, err := s.Reserve(ctx, reservation.Booking{Reservations: []*reservation.Reservation{poolBooking("deluxe", 20, 22), poolBooking("deluxe", 21, 23)}, RequestID: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].ID != first[0].ID || again[0].ResourceID != first[0].ResourceID || again[1].ResourceID != first[1].ResourceID {
		t.Errorf("retry got %v, want the first call's units", again)
	}
	// The pool's free windows, unit by unit: room-1 10-12, room-2 11-13, room-3 11-13 taken.
	free, err := s.FreeSlots(ctx, reservation.SlotQuery{PoolID: "deluxe", Start: base.Add(9 * time.Hour), End: base.Add(14 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var got2 []string
	for _, w := range free {
		got2 = append(got2, fmt.Sprintf("%s %d-%d %d", w.ResourceID, w.Start.Hour(), w.End.Hour(), w.Available))
	}
	if want := "room-1 9-10 1,room-1 12-14 1,room-2 9-11 1,room-2 13-14 1,room-3 9-11 1,room-3 13-14 1"; strings.Join(got2, ",") != want {
		t.Errorf("pool FreeSlots = %v, want %s (room-4 disabled)", got2, want)
	}
	// room-2 holds future bookings of the pool: it cannot leave it, but may stay and change.
	_, err = s.PutResource(ctx, &reservation.Resource{ID: "room-2", PoolID: "standard"}, 0)
	if reservation.ErrorCode(err) != reservation.ESTATE || !strings.Contains(err.Error(), "2031-05-04T11:00:00Z") {
		t.Errorf("moving a booked unit out of its pool: %v, want ESTATE naming 11:00", err)
	}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room-2", PoolID: "deluxe", DisplayName: "Room 2"}, 0); err != nil {
		t.Errorf("a unit staying in its pool: %v", err)
	}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room-4", PoolID: "standard"}, 0); err != nil {
		t.Errorf("moving a unit with no booking: %v", err)
	}
	if _, err := s.Reserve(ctx, reservation.Book(poolBooking("no-such-pool", 1, 2))); reservation.ErrorCode(err) != reservation.ESTATE {
		t.Errorf("a pool with no units: %v, want POOL_FULL", err)
	}
}

// TestPoolBatchFindsAnAssignment: a batch of several pooled items gets units that fit all of
// them when some do, even where giving each item, in turn, its first unit that fits would not.
// room-2 is taken from 12:00 to 13:00. A short stay (10–11) fits both rooms and a long one
// (10–13) only room-1: the short stay must give room-1 up. Three stays that overlap on a pool
// of two rooms are refused with POOL_FULL, naming the item that could not be placed, and
// write nothing.
func TestPoolBatchFindsAnAssignment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	for _, id := range []string{"room-1", "room-2"} {
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, PoolID: "twin"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(ctx, reservation.Book(window("room-2", 12, 13))); err != nil {
		t.Fatal(err)
	}
	out, err := s.Reserve(ctx, reservation.Book(poolBooking("twin", 10, 11), poolBooking("twin", 10, 13)))
	if err != nil {
		t.Fatalf("a short and a long stay that fit room-2 and room-1: %v", err)
	}
	if out[0].ResourceID != "room-2" || out[1].ResourceID != "room-1" {
		t.Errorf("units %s, %s; want room-2 for the short stay and room-1 for the long one", out[0].ResourceID, out[1].ResourceID)
	}
	// The order of the items does not matter when one assignment fits.
	out, err = s.Reserve(ctx, reservation.Book(poolBooking("twin", 20, 23), poolBooking("twin", 20, 21)))
	if err != nil || out[0].ResourceID != "room-1" || out[1].ResourceID != "room-2" {
		t.Fatalf("two evening stays on a free pool: %v, %v; want room-1 then room-2", out, err)
	}
	_, err = s.Reserve(ctx, reservation.Book(poolBooking("twin", 30, 32), poolBooking("twin", 31, 33), poolBooking("twin", 31, 32)))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Reason != reservation.ReasonPoolFull || e.Metadata["item"] != "2" {
		t.Fatalf("three overlapping stays on two rooms: %v, want POOL_FULL naming item 2", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 5 {
		t.Errorf("%d reservations stored, want 5 (nothing of the refused batch)", n)
	}
	if o := repotest.Overlaps(t, db); o != 0 {
		t.Errorf("%d overlapping pairs", o)
	}
}

// blindIndex is a read index that sees the pool's units and none of their reservations, all
// enabled: the worst a stale index could offer a pool call.
type blindIndex struct{ units []*reservation.Resource }

func (x blindIndex) View(context.Context, reservation.ReadOptions, bool) (reservation.ReadView, bool) {
	return blindView(x), true
}

type blindView blindIndex

func (blindView) Position() reservation.ReadPosition                         { return reservation.ReadPosition{} }
func (blindView) Now() time.Time                                             { return time.Now() }
func (blindView) Get(string) (*reservation.Reservation, bool)                { return nil, false }
func (blindView) Find(reservation.Filter) ([]*reservation.Reservation, bool) { return nil, false }
func (blindView) Overlapping(ids []string, _, _ time.Time) (map[string][]*reservation.Reservation, bool) {
	return map[string][]*reservation.Reservation{}, true
}
func (v blindView) Resource(id string) (*reservation.Resource, bool) { return nil, false }
func (v blindView) Pool(string) []*reservation.Resource              { return v.units }
func (v blindView) Resources() []*reservation.Resource               { return v.units }

// TestPoolUnitsFromAStaleIndex: the units a read index offers a pool call are checked again
// under the locks. An index that sees every unit free and enabled offers the booked and the
// disabled ones; the calls still book the free units by id, then find the pool full, and no
// unit is booked twice.
func TestPoolUnitsFromAStaleIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	var units []*reservation.Resource
	for _, id := range []string{"room-1", "room-2", "room-3", "room-4"} {
		u := &reservation.Resource{ID: id, PoolID: "deluxe", Disabled: id == "room-2"}
		if _, err := s.PutResource(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
		enabled := *u
		enabled.Disabled = false
		units = append(units, &enabled)
	}
	s.UseIndex(blindIndex{units})
	if _, err := s.Reserve(ctx, reservation.Book(window("room-1", 10, 12))); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		out, err := s.Reserve(ctx, reservation.Book(poolBooking("deluxe", 11, 13)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out[0].ResourceID)
	}
	if got[0] != "room-3" || got[1] != "room-4" {
		t.Errorf("units assigned %v, want room-3 then room-4 (room-1 taken, room-2 disabled)", got)
	}
	_, err := s.Reserve(ctx, reservation.Book(poolBooking("deluxe", 11, 14)))
	if reservation.ErrorCode(err) != reservation.ESTATE {
		t.Fatalf("a booking of a full pool: %v, want %s", err, reservation.ReasonPoolFull)
	}
	if n := s.Stats().UnitsFromMemory; n != 3 {
		t.Errorf("%d tries took their units from the index, want 3 (each call's first)", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 3 {
		t.Errorf("%d reservations stored, want 3", n)
	}
}

// TestPoolUnitsFromMemorySkipWhatThisReplicaTook: the read index learns of a commit through
// the feed, later than the conflict cache, which hears of this replica's commits as they
// commit. A pool call picking from memory leaves out the units the cache knows taken, so calls
// one after another are not offered the units the calls before them took: with an index
// blind to every booking, seven calls book seven units in order, none tried twice.
func TestPoolUnitsFromMemorySkipWhatThisReplicaTook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{Taken: stalledCache(t)}) // it learns of this store's commits alone
	var units []*reservation.Resource
	for i := range 8 {
		u := &reservation.Resource{ID: fmt.Sprint("room-", i+1), PoolID: "deluxe"}
		if _, err := s.PutResource(ctx, u, 0); err != nil {
			t.Fatal(err)
		}
		units = append(units, u)
	}
	s.UseIndex(blindIndex{units})
	for i := range 7 {
		out, err := s.Reserve(ctx, reservation.Book(poolBooking("deluxe", 11, 13)))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprint("room-", i+1); out[0].ResourceID != want {
			t.Errorf("call %d booked %s, want %s", i+1, out[0].ResourceID, want)
		}
	}
	if st := s.Stats(); st.UnitsFromMemory != 7 || st.UnitsGone != 0 {
		t.Errorf("%d tries from memory, %d found their units gone; want 7 and 0", st.UnitsFromMemory, st.UnitsGone)
	}
}
