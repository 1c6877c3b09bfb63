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
