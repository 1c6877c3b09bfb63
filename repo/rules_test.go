package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// minutes is a window of resource from base plus fromM minutes to base plus toM.
func minutes(resource string, fromM, toM int) *reservation.Reservation {
	return &reservation.Reservation{UserID: "u", ResourceID: resource,
		Start: base.Add(time.Duration(fromM) * time.Minute), End: base.Add(time.Duration(toM) * time.Minute)}
}

// TestBuffersEveryWritePath: on each write path (group commit, alone, the precheck, the
// overlap check's statement with a limit per item; the conflict cache's refusals are checked
// through replicas, in service's TestBuffersUnderConcurrency), a booking that ends at
// 10:00 with a 15-minute after-buffer and a 5-minute before-buffer blocks a start before
// 10:20 and admits one at 10:20; and on a resource of capacity 2 the peak is over blocked
// windows.
func TestBuffersEveryWritePath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	variants := map[string]repo.Options{"fallback": {MaxConflicts: 1}}
	for name, opts := range storeVariants {
		variants[name] = opts
	}
	for name, opts := range variants {
		s := repo.New(db, opts)
		room, lot := "room-"+name, "lot-"+name
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: room, Rules: reservation.Rules{BufferBefore: 5 * time.Minute, BufferAfter: 15 * time.Minute}}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: lot, Capacity: 2, Rules: reservation.Rules{BufferAfter: time.Minute}}, 0); err != nil {
			t.Fatal(err)
		}
		// 9:00 to 10:00 (and, for the fallback's limit of 1 conflict, 8:00 to 8:30 as well).
		held, err := s.Reserve(ctx, reservation.Book(minutes(room, 9*60, 10*60)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(minutes(room, 8*60, 8*60+30))); err != nil {
			t.Fatal(err)
		}
		_, err = s.Reserve(ctx, reservation.Book(minutes(room, 10*60+20-1, 11*60)))
		var e *reservation.Error
		if !errors.As(err, &e) || e.Code != reservation.ECONFLICT || e.Conflicts[0].Existing.ID != held[0].ID {
			t.Errorf("%s: a start at 10:19: %v, want ECONFLICT naming the 9:00 booking", name, err)
		}
		// Between the two: 8:30 + 20m = 8:50 to 9:00 - 20m = 8:40 is empty; 8:50 to 8:55 meets both.
		if _, err := s.Reserve(ctx, reservation.Book(minutes(room, 8*60+50, 8*60+55))); reservation.ErrorCode(err) != reservation.ECONFLICT {
			t.Errorf("%s: 8:50 to 8:55 between two bookings: %v, want ECONFLICT", name, err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(minutes(room, 10*60+20, 11*60))); err != nil {
			t.Errorf("%s: a start at 10:20: %v", name, err)
		}
		// Capacity 2, 1-minute after-buffer: two back to back and one across both fit without
		// buffers, not with them.
		if _, err := s.Reserve(ctx, reservation.Book(minutes(lot, 8*60, 10*60))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(minutes(lot, 10*60, 12*60))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(minutes(lot, 9*60, 11*60))); reservation.ErrorCode(err) != reservation.ECONFLICT {
			t.Errorf("%s: capacity 2 across two bookings 1 minute apart with a 1-minute buffer: %v, want ECONFLICT", name, err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(minutes(lot, 10*60+1, 11*60))); err != nil {
			t.Errorf("%s: capacity 2, a start 1 minute after the first ends: %v", name, err)
		}
	}
	if n := repotest.BlockedOverlaps(t, db); n != 0 {
		t.Fatalf("%d pairs of blocked windows overlap", n)
	}
}

// TestRulesEveryWritePath: a booking rule refuses with RULE_VIOLATION on every write path,
// at the store's clock, and a BLOCKED window is exempt from the notice.
func TestRulesEveryWritePath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	now := base.Add(-time.Hour)
	rules := reservation.Rules{MinNotice: 2 * time.Hour}
	setup := repo.New(db, repo.Options{Now: func() time.Time { return now }})
	for _, id := range []string{"room", "unit-1", "unit-2"} {
		r := &reservation.Resource{ID: id, Rules: rules}
		if id != "room" {
			r.PoolID = "pool"
		}
		if _, err := setup.PutResource(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	early := minutes("room", 30, 90) // starts 1h30 from now
	pooled := minutes("", 30, 90)
	pooled.PoolID = "pool"
	for name, opts := range storeVariants {
		opts.Now = func() time.Time { return now }
		s := repo.New(db, opts)
		for what, b := range map[string]reservation.Booking{
			"Reserve":       reservation.Book(early),
			"batch":         reservation.Book(minutes("room", 600, 660), early),
			"request id":    {Reservations: []*reservation.Reservation{early}, RequestID: "req-" + name},
			"pool":          reservation.Book(pooled),
			"pool in batch": reservation.Book(minutes("room", 700, 760), pooled),
		} {
			_, err := s.Reserve(ctx, b)
			var e *reservation.Error
			if !errors.As(err, &e) || e.Code != reservation.ESTATE || e.Reason != reservation.ReasonRuleViolation || e.Metadata["rule"] != reservation.RuleMinNotice {
				t.Errorf("%s, %s: %v, want ESTATE %s of min_notice", name, what, err, reservation.ReasonRuleViolation)
			}
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Fatalf("%d reservations written", n)
	}
	blocked := *early
	blocked.Status = reservation.StatusBlocked
	if _, err := setup.Reserve(ctx, reservation.Book(&blocked)); err != nil {
		t.Errorf("a BLOCKED window inside the notice: %v", err)
	}
	// At the bound: a start exactly two hours from now.
	if _, err := setup.Reserve(ctx, reservation.Book(minutes("unit-1", 60, 90))); err != nil {
		t.Errorf("a start exactly min_notice from now: %v", err)
	}
}

// TestPutResourceRules: the rules are stored and read back; widening a buffer is refused when
// reservations booked would then meet, and narrowing one is not.
func TestPutResourceRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{Now: func() time.Time { return base }})
	rules := reservation.Rules{BufferBefore: time.Minute, BufferAfter: 10 * time.Minute, MinDuration: 15 * time.Minute,
		MaxDuration: 3 * time.Hour, MinNotice: 30 * time.Second, MaxAdvance: 365 * 24 * time.Hour}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room", Rules: rules}, 0); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetResource(ctx, "room")
	if err != nil || got.Rules != rules {
		t.Fatalf("GetResource = %+v, %v: want rules %+v", got, err, rules)
	}
	list, err := s.ListResources(ctx, reservation.ResourceFilter{})
	if err != nil || len(list) != 1 || list[0].Rules != rules {
		t.Fatalf("ListResources = %v, %v", list, err)
	}
	if _, err := s.Reserve(ctx, reservation.Book(minutes("room", 60, 120), minutes("room", 131, 180))); err != nil {
		t.Fatal(err)
	}
	wider := rules
	wider.BufferAfter = 11 * time.Minute // 1 + 11 > 11 minutes between them
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room", Rules: wider}, 0); reservation.ErrorCode(err) != reservation.ESTATE {
		t.Errorf("a buffer the booked ones would meet by: %v, want ESTATE", err)
	}
	exact := rules
	exact.BufferBefore, exact.BufferAfter = 0, 11*time.Minute // exactly the 11 minutes between them
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room", Rules: exact}, 0); err != nil {
		t.Errorf("a buffer exactly the gap between booked ones: %v", err)
	}
	if got, _ := s.GetResource(ctx, "room"); got.Rules != exact {
		t.Errorf("rules after Put = %+v, want %+v", got.Rules, exact)
	}
}

// TestFreeSlotsMoveWithTheClock: the store cuts FreeSlots by each resource's rules at its own
// clock (the one its writes check the rules by): as the clock moves on, so do the first start
// (now+min_notice) and the latest (now+max_advance); a pool's units are cut each by its rules;
// and the store itself keeps windows before now where no notice applies (the past is the
// service's to cut). At each instant, every window offered holds a booking of min_duration at
// its start that the store admits.
func TestFreeSlotsMoveWithTheClock(t *testing.T) {
	t.Parallel()
	_, s, clk := clockedStore(t)
	ctx := context.Background()
	t0 := clk.Now()
	rules := reservation.Rules{MinNotice: time.Hour, MaxAdvance: 3 * time.Hour, MinDuration: 30 * time.Minute}
	for _, r := range []*reservation.Resource{
		{ID: "room", Rules: rules},
		{ID: "u1", PoolID: "p", Rules: reservation.Rules{MinNotice: 2 * time.Hour}},
		{ID: "u2", PoolID: "p"},
	} {
		if _, err := s.PutResource(ctx, r, 0); err != nil {
			t.Fatal(err)
		}
	}
	h := func(x float64) time.Time { return t0.Add(time.Duration(x * float64(time.Hour))) }
	spell := func(ws []reservation.Window) []string {
		var out []string
		for _, w := range ws {
			out = append(out, strings.TrimSpace(fmt.Sprintf("%s %s-%s", w.ResourceID, w.Start.Sub(t0), w.End.Sub(t0))))
		}
		return out
	}
	if _, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: "room", Start: h(2), End: h(2.5)})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now  float64
		room []string
		pool []string
	}{
		{0, []string{"1h0m0s-2h0m0s", "2h30m0s-6h0m0s"}, []string{"u1 2h0m0s-6h0m0s", "u2 -1h0m0s-6h0m0s"}},
		{0.75, []string{"2h30m0s-6h0m0s"}, []string{"u1 2h45m0s-6h0m0s", "u2 -1h0m0s-6h0m0s"}}, // 1:45 to 2:00 is too short
		{3.25, []string{"4h15m0s-6h0m0s"}, []string{"u1 5h15m0s-6h0m0s", "u2 -1h0m0s-6h0m0s"}},
		{4.5, []string{"5h30m0s-6h0m0s"}, []string{"u2 -1h0m0s-6h0m0s"}}, // 30 minutes left: min_duration exactly; u1's notice passes the end
		{4.75, nil, []string{"u2 -1h0m0s-6h0m0s"}},
	} {
		clk.Set(h(c.now))
		room, err := s.FreeSlots(ctx, reservation.SlotQuery{ResourceID: "room", Start: h(-1), End: h(6)})
		if err != nil {
			t.Fatal(err)
		}
		pool, err := s.FreeSlots(ctx, reservation.SlotQuery{PoolID: "p", Start: h(-1), End: h(6)})
		if err != nil {
			t.Fatal(err)
		}
		if got := spell(room); !slices.Equal(got, c.room) {
			t.Errorf("at %gh: room %v, want %v", c.now, got, c.room)
		}
		if got := spell(pool); !slices.Equal(got, c.pool) {
			t.Errorf("at %gh: pool %v, want %v", c.now, got, c.pool)
		}
		for _, w := range room {
			r := &reservation.Reservation{UserID: "u", ResourceID: "room", Start: w.Start, End: w.Start.Add(rules.MinDuration)}
			if err := rules.Check(0, r, h(c.now)); err != nil {
				t.Errorf("at %gh: window %v offered: %v", c.now, w, err)
			}
		}
	}
}
