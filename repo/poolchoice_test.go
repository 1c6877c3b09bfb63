package repo_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"reservation"
	"reservation/lock"
	"reservation/repo"
	"reservation/repo/repotest"
)

// gatedLocker is a real Locker that, while gating, reports the keys of each Lock call on calls
// and takes them only once told on proceed: the test acts between a pool call's read, which
// chose the units, and the locks of its write.
type gatedLocker struct {
	reservation.Locker
	gating  atomic.Bool
	calls   chan []string
	proceed chan struct{}
}

func (g *gatedLocker) Lock(ctx context.Context, keys ...string) (reservation.Unlock, error) {
	if g.gating.Load() {
		select {
		case g.calls <- slices.Clone(keys):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case <-g.proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Locker.Lock(ctx, keys...)
}

// A pool call reads, without locks, which units look free, locks the first three alone and
// chooses among them. Here, each time it has read, another writer (a second store, with no
// Locker: the database guard alone) takes units directly, disables one or moves one out of
// the pool before the call's locks are taken. The call must never book a unit so taken or
// gone: it moves on to the next unit it locked, or reads again, and after three tries locks
// every unit, which books the one left or, when none is, answers POOL_FULL. Through group
// commit, and on its own with a request id, whose retry then returns the same unit.
func TestPoolChoiceTakenOrGoneBeforeItsLocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		requestID string
		end       string // "next": the second unit locked is booked; "free": room-4 is, once every unit is locked; "full": POOL_FULL
	}{
		{"grouped/next", "", "next"},
		{"grouped/free", "", "free"},
		{"grouped/full", "", "full"},
		{"request id/next", "req-1", "next"},
		{"request id/free", "req-2", "free"},
		{"request id/full", "req-3", "full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := repotest.NewDB(t)
			gate := &gatedLocker{Locker: lock.NewLocal(0), calls: make(chan []string), proceed: make(chan struct{})}
			s := repo.New(db, repo.Options{Locker: gate})
			other := repo.New(db, repo.Options{})
			for _, id := range []string{"room-1", "room-2", "room-3", "room-4"} {
				if _, err := other.PutResource(ctx, &reservation.Resource{ID: id, PoolID: "deluxe"}, 0); err != nil {
					t.Fatal(err)
				}
			}
			take := func(id string, fromH, toH int) string {
				t.Helper()
				made, err := other.Reserve(ctx, reservation.Book(window(id, fromH, toH)))
				if err != nil {
					t.Fatal(err)
				}
				return made[0].ID
			}
			put := func(id, pool string, disabled bool) {
				t.Helper()
				if _, err := other.PutResource(ctx, &reservation.Resource{ID: id, PoolID: pool, Disabled: disabled}, 0); err != nil {
					t.Fatal(err)
				}
			}
			cancel := func(id string) {
				t.Helper()
				if _, err := other.Cancel(ctx, reservation.Ref{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			gate.gating.Store(true)
			type result struct {
				out []*reservation.Reservation
				err error
			}
			done := make(chan result, 1)
			book := reservation.Booking{Reservations: []*reservation.Reservation{poolBooking("deluxe", 10, 12)}, RequestID: tc.requestID}
			go func() {
				out, err := s.Reserve(ctx, book)
				done <- result{out, err}
			}()
			step := func(want ...string) {
				t.Helper()
				select {
				case keys := <-gate.calls:
					if !slices.Equal(keys, want) {
						t.Fatalf("locks %v, want %v", keys, want)
					}
				case r := <-done:
					var got []string
					for _, o := range r.out {
						got = append(got, o.ResourceID+" in pool "+o.PoolID)
					}
					t.Fatalf("the call ended (%v, %v) before locking %v", got, r.err, want)
				case <-time.After(30 * time.Second):
					t.Fatal("no Lock call within 30s")
				}
			}
			// Try 1: the first three units free when read.
			step("room-1", "room-2", "room-3")
			first := take("room-1", 11, 13)
			wantUnit := "room-2"
			if tc.end != "next" {
				put("room-2", "deluxe", true)
				put("room-3", "standard", false)
				gate.proceed <- struct{}{}
				// Try 2: room-4 alone is free; it is taken, and room-1 freed.
				step("room-4")
				fourth := take("room-4", 9, 11)
				cancel(first)
				gate.proceed <- struct{}{}
				// Try 3: room-1 is free again, and taken again.
				step("room-1")
				take("room-1", 10, 11)
				gate.proceed <- struct{}{}
				// The tries are spent: every unit still in the pool is locked, room-2 disabled too.
				step("room-1", "room-2", "room-4")
				wantUnit = "room-4"
				if tc.end == "free" {
					cancel(fourth)
				}
			}
			gate.proceed <- struct{}{}
			gate.gating.Store(false)
			var r result
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the pool call did not end within 30s")
			}
			if tc.end == "full" {
				var e *reservation.Error
				if !errors.As(r.err, &e) || e.Reason != reservation.ReasonPoolFull || e.Metadata["pool_id"] != "deluxe" {
					t.Fatalf("got %v, %v; want POOL_FULL for deluxe", r.out, r.err)
				}
			} else {
				if r.err != nil {
					t.Fatal(r.err)
				}
				if got := r.out[0]; got.ResourceID != wantUnit || got.PoolID != "deluxe" {
					t.Fatalf("booked %s in pool %q, want %s in deluxe", got.ResourceID, got.PoolID, wantUnit)
				}
				if tc.requestID != "" {
					again, err := s.Reserve(ctx, book)
					if err != nil || again[0].ID != r.out[0].ID || again[0].ResourceID != wantUnit {
						t.Errorf("retry with the request id: %v, %v; want reservation %s on %s", again, err, r.out[0].ID, wantUnit)
					}
				}
			}
			if n := repotest.Overlaps(t, db); n != 0 {
				t.Errorf("%d pairs of stored reservations overlap", n)
			}
			want := 0 // room-2 was disabled and room-3 moved out before the call locked them
			if tc.end == "next" {
				want = 1 // room-2 booked
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE resource_id IN ('room-2', 'room-3')"); n != want {
				t.Errorf("%d reservations on room-2 and room-3, want %d", n, want)
			}
		})
	}
}

// Many writers on two stores (one with a Locker, one on the database guard alone) book a pool
// of 6 units and its units directly, alone and in batches, some as holds, while another disables and enables one unit and moves
// another out of the pool and back. Checked in SQL: no two reservations of a unit overlap,
// every pool booking acknowledged is stored on a unit of the pool, with its pool, and the
// rows are the bookings acknowledged. The workload must both book and fill the pool.
func TestPoolChoiceRacesDirectBookings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	stores := []*repo.Store{repo.New(db, repo.Options{Locker: lock.NewLocal(0)}), repo.New(db, repo.Options{})}
	units := []string{"u1", "u2", "u3", "u4", "u5", "u6"}
	for _, u := range units {
		if _, err := stores[0].PutResource(ctx, &reservation.Resource{ID: u, PoolID: "p"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	const writers, ops, slots = 24, 25, 72
	var mu sync.Mutex
	acked := map[string]string{} // reservation id: unit
	outcomes := map[string]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // toggles u3's disabled flag and u5's pool until the writers are done
		s := stores[1]
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond): // pacing only: the writers get the cores
			}
			if _, err := s.PutResource(ctx, &reservation.Resource{ID: "u3", PoolID: "p", Disabled: i%2 == 0}, 0); err != nil {
				t.Errorf("toggling u3: %v", err)
				return
			}
			pool := map[bool]string{true: "elsewhere", false: "p"}[i%2 == 0]
			// Moving u5 out is refused while it holds live bookings made in the pool.
			if _, err := s.PutResource(ctx, &reservation.Resource{ID: "u5", PoolID: pool}, 0); err != nil && reservation.ErrorCode(err) != reservation.ESTATE {
				t.Errorf("moving u5: %v", err)
				return
			}
		}
	})
	var writersWG sync.WaitGroup
	for w := range writers {
		writersWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			s := stores[w%len(stores)]
			item := func(pooled bool) *reservation.Reservation {
				from := rng.IntN(slots - 1)
				r := &reservation.Reservation{UserID: "u", Start: base.Add(time.Duration(from) * 30 * time.Minute)}
				r.End = r.Start.Add(time.Duration(1+rng.IntN(4)) * 30 * time.Minute)
				if pooled {
					r.PoolID = "p"
				} else {
					r.ResourceID = units[rng.IntN(len(units))]
				}
				return r
			}
			for range ops {
				// A pool booking, a direct one, or a batch of two pool bookings and a direct one.
				kind := [...]string{"pool", "pool", "pool", "direct", "direct", "batch"}[rng.IntN(6)]
				b := reservation.Booking{Reservations: []*reservation.Reservation{item(kind != "direct")}}
				if kind == "batch" {
					b.Reservations = append(b.Reservations, item(false), item(true))
				}
				if rng.IntN(4) == 0 {
					b.Hold = time.Hour // a hold, unconfirmed: it keeps its unit until it lapses
				}
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				out, err := s.Reserve(cctx, b)
				cancel()
				outcome := "OK"
				var e *reservation.Error
				switch {
				case err == nil:
				case errors.As(err, &e) && (e.Reason == reservation.ReasonPoolFull || e.Code == reservation.ECONFLICT ||
					e.Reason == reservation.ReasonResourceDisabled):
					outcome = fmt.Sprint(e.Code, e.Reason)
				default:
					t.Errorf("reserve: %v", err)
					continue
				}
				mu.Lock()
				outcomes[kind+" "+outcome]++
				for i, o := range out {
					acked[o.ID] = o.ResourceID
					if b.Reservations[i].PoolID != "" && (!slices.Contains(units, o.ResourceID) || o.PoolID != "p") {
						t.Errorf("pool booking acknowledged on %s in pool %q", o.ResourceID, o.PoolID)
					}
				}
				mu.Unlock()
			}
		})
	}
	writersWG.Wait()
	close(stop)
	wg.Wait()
	t.Logf("outcomes: %v", outcomes)
	full := fmt.Sprint(reservation.ESTATE, reservation.ReasonPoolFull)
	if outcomes["pool OK"] == 0 || outcomes["pool "+full] == 0 || outcomes["batch OK"] == 0 || outcomes["batch "+full] == 0 {
		t.Errorf("outcomes %v: the workload should book the pool and fill it, alone and in batches", outcomes)
	}
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of stored reservations overlap", n)
	}
	var stored []struct {
		ID       string `db:"id"`
		Resource string `db:"resource_id"`
	}
	if err := db.Select(&stored, "SELECT id, resource_id FROM reservations"); err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(acked) {
		t.Errorf("%d reservations stored, %d acknowledged", len(stored), len(acked))
	}
	for _, r := range stored {
		if acked[r.ID] != r.Resource {
			t.Errorf("stored reservation %s on %s was acknowledged on %q", r.ID, r.Resource, acked[r.ID])
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE pool_id <> 'p' AND resource_id <> 'u5'"); n != 0 {
		t.Errorf("%d reservations stored without their pool", n)
	}
}
