package repo_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// clock is a settable time source for a Store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// clockedStore is a store on a fresh database whose clock the test sets.
func clockedStore(t *testing.T) (*sqlx.DB, *repo.Store, *clock) {
	db, _ := repotest.NewDB(t)
	clk := &clock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
	return db, repo.New(db, repo.Options{Now: clk.Now}), clk
}

// TestHoldLapsesAtItsExpiry: a hold blocks until the instant it expires, not a microsecond
// longer, and from then on it is free whether or not the reaper has run.
func TestHoldLapsesAtItsExpiry(t *testing.T) {
	t.Parallel()
	db, s, clk := clockedStore(t)
	t0 := clk.Now()
	ctx := context.Background()

	held, err := s.Reserve(ctx, reservation.Booking{Reservations: []*reservation.Reservation{window("room", 0, 2)}, Hold: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	hold := held[0]
	if want := t0.Add(10 * time.Minute); !hold.ExpiresAt.Equal(want) || hold.Status != reservation.StatusPending {
		t.Fatalf("hold %+v: want PENDING, expiring at %s", *hold, want)
	}
	expiry := hold.ExpiresAt

	clk.Set(expiry.Add(-time.Microsecond))
	if _, err := s.Reserve(ctx, reservation.Book(window("room", 1, 3))); reservation.ErrorCode(err) != reservation.ECONFLICT {
		t.Fatalf("a microsecond before the expiry: %v, want a conflict", err)
	}
	clk.Set(expiry)
	if _, err := s.Confirm(ctx, reservation.Ref{ID: hold.ID}); reservation.ErrorCode(err) != reservation.ESTATE {
		t.Fatalf("confirm at the expiry: %v, want ESTATE", err)
	}
	if _, err := s.Update(ctx, reservation.Ref{ID: hold.ID}, reservation.SetNote("n")); reservation.ErrorCode(err) != reservation.ESTATE {
		t.Fatalf("update at the expiry: %v, want ESTATE", err)
	}
	found, err := s.Find(ctx, reservation.Filter{ResourceID: "room"})
	if err != nil || len(found) != 0 {
		t.Fatalf("find at the expiry: %d reservations, %v; want none", len(found), err)
	}
	free, err := s.FreeSlots(ctx, reservation.SlotQuery{ResourceID: "room", Start: base, End: base.Add(4 * time.Hour)})
	if err != nil || len(free) != 1 || !free[0].Start.Equal(base) || !free[0].End.Equal(base.Add(4*time.Hour)) {
		t.Fatalf("free slots at the expiry: %v, %v; want the whole window", free, err)
	}
	booked, err := s.Reserve(ctx, reservation.Book(window("room", 1, 3)))
	if err != nil {
		t.Fatalf("at the expiry: %v, want the booking to succeed", err)
	}

	// The reaper removes the lapsed hold through a normal write, which records its DELETE.
	if n, err := s.Reap(ctx); n != 1 || err != nil {
		t.Fatalf("reap: %d, %v; want 1 hold removed", n, err)
	}
	if n, err := s.Reap(ctx); n != 0 || err != nil {
		t.Fatalf("second reap: %d, %v; want nothing left", n, err)
	}
	var ops []int
	if err := db.Select(&ops, "SELECT op FROM reservation_changes WHERE reservation_id = ? ORDER BY id", hold.ID); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ops, []int{int(reservation.OpCreate), int(reservation.OpDelete)}) {
		t.Fatalf("changes of the hold: ops %v, want CREATE then DELETE", ops)
	}
	if _, err := s.Get(ctx, hold.ID); reservation.ErrorCode(err) != reservation.ENOTFOUND {
		t.Fatalf("get of a reaped hold: %v, want ENOTFOUND", err)
	}
	if got, err := s.Get(ctx, booked[0].ID); err != nil || got.Version != 1 {
		t.Fatalf("the booking made over the lapsed hold: %v, %v", got, err)
	}
}

func TestConfirmedHoldStopsExpiring(t *testing.T) {
	t.Parallel()
	_, s, clk := clockedStore(t)
	t0 := clk.Now()
	ctx := context.Background()
	held, err := s.Reserve(ctx, reservation.Booking{Reservations: []*reservation.Reservation{window("room", 0, 2)}, Hold: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	confirmed, err := s.Confirm(ctx, reservation.Ref{ID: held[0].ID})
	if err != nil || !confirmed.ExpiresAt.IsZero() || confirmed.Status != reservation.StatusConfirmed {
		t.Fatalf("confirm: %+v, %v; want CONFIRMED without expiry", confirmed, err)
	}
	clk.Set(t0.Add(time.Hour))
	if n, err := s.Reap(ctx); n != 0 || err != nil {
		t.Fatalf("reap: %d, %v; a confirmed hold must stay", n, err)
	}
	if _, err := s.Reserve(ctx, reservation.Book(window("room", 1, 3))); reservation.ErrorCode(err) != reservation.ECONFLICT {
		t.Fatalf("booking over a confirmed hold: %v, want a conflict", err)
	}
}

// TestFreeSlotsAgainstBruteForce: random layouts of bookings and holds, some lapsed, on one
// resource; the free windows must be what a minute-by-minute scan finds.
func TestFreeSlotsAgainstBruteForce(t *testing.T) {
	t.Parallel()
	_, s, clk := clockedStore(t)
	ctx := context.Background()
	minute := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	rng := rand.New(rand.NewPCG(3, 4))
	busy := make([]bool, 24*60)
	for i := range 120 {
		start := rng.IntN(24*60 - 60)
		r := &reservation.Reservation{UserID: "u", ResourceID: "room", Start: minute(start), End: minute(start + 5 + rng.IntN(55))}
		b := reservation.Book(r)
		lapses := i%3 == 0
		if lapses {
			b.Hold = time.Minute
		}
		if _, err := s.Reserve(ctx, b); err != nil {
			if reservation.ErrorCode(err) != reservation.ECONFLICT {
				t.Fatal(err)
			}
			continue
		}
		if lapses {
			clk.Set(clk.Now().Add(time.Minute)) // the hold lapses before the next booking
			continue
		}
		for m := start; m < int(r.End.Sub(base).Minutes()); m++ {
			busy[m] = true
		}
	}
	for trial := range 30 {
		from := rng.IntN(20 * 60)
		q := reservation.SlotQuery{ResourceID: "room", Start: minute(from), End: minute(from + 1 + rng.IntN(24*60-from-1)), MinDuration: time.Duration(rng.IntN(30)) * time.Minute}
		var want []reservation.Window
		to := int(q.End.Sub(base).Minutes())
		for m := from; m < to; {
			if busy[m] {
				m++
				continue
			}
			end := m
			for end < to && !busy[end] {
				end++
			}
			if w := (reservation.Window{Start: minute(m), End: minute(end)}); w.End.Sub(w.Start) >= q.MinDuration {
				want = append(want, w)
			}
			m = end
		}
		got, err := s.FreeSlots(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d, %+v:\ngot  %v\nwant %v", trial, q, got, want)
		}
	}
}
