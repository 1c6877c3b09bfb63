package service_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	"reservation/cache"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/server"
	"reservation/service"
)

// stoppedReplica serves db with the store's and the API's clock stopped at now, past windows
// allowed or not.
func stoppedReplica(t *testing.T, db *sqlx.DB, now time.Time, allowPast bool) *replica {
	clock := func() time.Time { return now }
	return startReplicaOpts(t, db, nil, server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Store: repo.Options{Now: clock}, API: service.Options{Now: clock, AllowPast: allowPast},
		Cache: cache.Options{MaxEntries: cache.DefaultMaxEntries}, Logger: quiet,
	})
}

// freeSlots asks c for the free windows of a resource (or, with pool set, a pool) inside
// [from, to), failing the test on an error.
func freeSlots(t *testing.T, c pb.ReservationServiceClient, resource, pool string, from, to time.Time, minDur time.Duration) []*pb.TimeWindow {
	t.Helper()
	resp, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: resource, PoolId: pool,
		Start: timestamppb.New(from), End: timestamppb.New(to), MinDuration: durationpb.New(minDur)})
	if err != nil {
		t.Fatalf("FreeSlots of %s%s: %v", resource, pool, err)
	}
	return resp.GetFree()
}

// spellFrom lists windows as "[resource ]from-to" in durations from now.
func spellFrom(now time.Time, ws []*pb.TimeWindow) []string {
	var out []string
	for _, w := range ws {
		s := fmt.Sprintf("%s-%s", w.GetStart().AsTime().Sub(now), w.GetEnd().AsTime().Sub(now))
		if w.GetResourceId() != "" {
			s = w.GetResourceId() + " " + s
		}
		out = append(out, s)
	}
	return out
}

// bookable books [start, start+d) of resource through c, then cancels it: the window could be
// booked. It returns the refusal, if any.
func bookable(t *testing.T, c pb.ReservationServiceClient, resource string, start time.Time, d time.Duration) error {
	t.Helper()
	resp, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: window(resource, start, d)})
	if err != nil {
		return err
	}
	if _, err := c.Cancel(ctxFor(t), &pb.CancelRequest{Id: resp.GetReservation().GetId()}); err != nil {
		t.Fatalf("Cancel %s: %v", resp.GetReservation().GetId(), err)
	}
	return nil
}

// checkOffered books and cancels, on the resource each window names (or resource), a booking
// of d at the window's start and one ending as late as the window and latest (the latest
// start, zero for none) allow: every one must be admitted.
func checkOffered(t *testing.T, c pb.ReservationServiceClient, resource string, ws []*pb.TimeWindow, d time.Duration, latest time.Time) int {
	t.Helper()
	n := 0
	for _, w := range ws {
		id := w.GetResourceId()
		if id == "" {
			id = resource
		}
		start, end := w.GetStart().AsTime(), w.GetEnd().AsTime()
		last := end.Add(-d)
		if !latest.IsZero() && last.After(latest) {
			last = latest
		}
		if last.Before(start) { // the rest of its run starts after the advance
			last = start
		}
		for _, s := range []time.Time{start, last} {
			if err := bookable(t, c, id, s, d); err != nil {
				t.Errorf("window %s %s-%s offered; a booking of %s at %s: %v", id, reservation.FormatTime(start), reservation.FormatTime(end), d, reservation.FormatTime(s), err)
			}
			n++
		}
	}
	return n
}

// TestFreeSlotsFollowRules: on resources with min_notice 1h, max_advance 2d and min_duration
// 30m at a stopped clock, FreeSlots over a window from yesterday to four days ahead starts its
// windows at now+1h, none after now+2d (one that starts before keeps its end), none shorter
// than 30m; every window holds a 30-minute booking at its start and one ending as late as it
// and the advance allow; just outside the bounds a booking is refused with RULE_VIOLATION, so
// the windows are no narrower than the rules. A BLOCKED booking may still go where FreeSlots
// (which answers for the others) offers nothing.
func TestFreeSlotsFollowRules(t *testing.T) {
	t.Parallel()
	now := base
	c := stoppedReplica(t, newDB(t), now, false).client
	h := func(x float64) time.Time { return now.Add(time.Duration(x * float64(time.Hour))) }
	rules := &pb.Resource{MinNotice: durationpb.New(time.Hour), MaxAdvance: durationpb.New(48 * time.Hour), MinDuration: durationpb.New(30 * time.Minute)}
	for _, id := range []string{"room", "desk"} {
		r := &pb.Resource{Id: id, MinNotice: rules.MinNotice, MaxAdvance: rules.MaxAdvance, MinDuration: rules.MinDuration}
		if _, err := c.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][3]any{
		{"room", h(3), h(4)}, {"room", h(4 + 1.0/3), h(5)}, // 20 minutes apart: too short
		{"room", h(46), h(46.5)}, {"room", h(47), h(47.75)}, // exactly 30 minutes apart; then free from 47:45, before the advance
		{"desk", h(47.5), h(48.5)}, // free again at 48:30, after the advance
	} {
		reserve(t, c, &pb.Reservation{UserId: "alice", ResourceId: b[0].(string), Start: timestamppb.New(b[1].(time.Time)), End: timestamppb.New(b[2].(time.Time))})
	}
	latest := h(48)
	for id, want := range map[string][]string{
		"room": {"1h0m0s-3h0m0s", "5h0m0s-46h0m0s", "46h30m0s-47h0m0s", "47h45m0s-96h0m0s"},
		"desk": {"1h0m0s-47h30m0s"},
	} {
		free := freeSlots(t, c, id, "", h(-24), h(96), 0)
		if got := spellFrom(now, free); !slices.Equal(got, want) {
			t.Errorf("%s: FreeSlots %v, want %v", id, got, want)
		}
		for _, w := range free {
			s, e := w.GetStart().AsTime(), w.GetEnd().AsTime()
			if s.Before(h(1)) || s.After(latest) || e.Sub(s) < 30*time.Minute {
				t.Errorf("%s: window %s-%s breaks the rules", id, s, e)
			}
		}
		checkOffered(t, c, id, free, 30*time.Minute, latest)
		// A query's own min_duration applies when it is the larger.
		if got := spellFrom(now, freeSlots(t, c, id, "", h(-24), h(96), 3*time.Hour)); id == "room" && !slices.Equal(got, []string{"5h0m0s-46h0m0s", "47h45m0s-96h0m0s"}) {
			t.Errorf("room, min_duration 3h: %v", got)
		}
	}
	// The bounds are the rules': a microsecond earlier than the first window, or later than
	// the latest start, is refused for the rule that FreeSlots cut by.
	for _, c2 := range []struct {
		start time.Time
		d     time.Duration
		rule  string
	}{
		{h(1).Add(-time.Microsecond), time.Hour, reservation.RuleMinNotice},
		{latest.Add(time.Microsecond), time.Hour, reservation.RuleMaxAdvance},
		{h(10), 30*time.Minute - time.Microsecond, reservation.RuleMinDuration},
	} {
		err := bookable(t, c, "room", c2.start, c2.d)
		if md := ruleInfo(t, c2.rule, err); md != nil && md["rule"] != c2.rule {
			t.Errorf("a booking at %s for %s: rule %q, want %q", c2.start, c2.d, md["rule"], c2.rule)
		}
	}
	// FreeSlots answers for bookings that are not BLOCKED: a BLOCKED one is exempt from the
	// notice (and the advance), and may be made where it offers nothing.
	blocked := window("room", h(0.25), 30*time.Minute)
	blocked.Status = pb.ReservationStatus_RESERVATION_STATUS_BLOCKED
	reserve(t, c, blocked)
}

// TestFreeSlotsPastWindows: by default a query over yesterday answers no windows, and one
// across now answers from now; with past windows allowed the old answer (a resource with no
// rules), though min_notice, a rule of the store, still cuts.
func TestFreeSlotsPastWindows(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	now := base
	h := func(x float64) time.Time { return now.Add(time.Duration(x * float64(time.Hour))) }
	strict, lax := stoppedReplica(t, db, now, false).client, stoppedReplica(t, db, now, true).client
	if _, err := lax.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: "noticed", MinNotice: durationpb.New(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	reserve(t, lax, window("plain", h(-10), time.Hour)) // yesterday's booking, allowed
	if _, err := strict.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: window("plain", h(-8), time.Hour)}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a past booking through the strict replica: %v, want INVALID_ARGUMENT", err)
	}
	for _, c := range []struct {
		name       string
		client     pb.ReservationServiceClient
		resource   string
		from, to   float64
		want       []string
		checkFirst bool
	}{
		{"yesterday", strict, "plain", -24, -1, nil, false},
		{"yesterday, ending at now", strict, "plain", -24, 0, nil, false},
		{"across now", strict, "plain", -24, 2, []string{"0s-2h0m0s"}, true},
		{"across now, noticed", strict, "noticed", -2, 3, []string{"1h0m0s-3h0m0s"}, true},
		{"yesterday, past allowed", lax, "plain", -24, -1, []string{"-24h0m0s--10h0m0s", "-9h0m0s--1h0m0s"}, true},
		{"across now, past allowed", lax, "plain", -2, 2, []string{"-2h0m0s-2h0m0s"}, true},
		{"across now, noticed, past allowed", lax, "noticed", -2, 3, []string{"1h0m0s-3h0m0s"}, true},
	} {
		free := freeSlots(t, c.client, c.resource, "", h(c.from), h(c.to), 0)
		if got := spellFrom(now, free); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
		if c.checkFirst {
			checkOffered(t, c.client, c.resource, free, 30*time.Minute, time.Time{})
		}
	}
}

// TestPoolFreeSlotsFollowUnitRules: FreeSlots of a pool cuts each unit's windows by that
// unit's rules, at a stopped clock, and every window holds a booking of the unit (and of the
// pool, which books the first unit whose rules and bookings admit it).
func TestPoolFreeSlotsFollowUnitRules(t *testing.T) {
	t.Parallel()
	now := base
	c := stoppedReplica(t, newDB(t), now, false).client
	h := func(x float64) time.Time { return now.Add(time.Duration(x * float64(time.Hour))) }
	for _, u := range []*pb.Resource{
		{Id: "d1", PoolId: "desks", MinNotice: durationpb.New(2 * time.Hour)},
		{Id: "d2", PoolId: "desks", MaxAdvance: durationpb.New(24 * time.Hour)},
		{Id: "d3", PoolId: "desks", MinDuration: durationpb.New(time.Hour)},
		{Id: "d4", PoolId: "desks"},
	} {
		if _, err := c.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: u}); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, c, booking("d2", 20, 23.5)) // free again at 23:30, before d2's advance: to the end
	reserve(t, c, booking("d3", 5, 6))     // then 45 minutes free, shorter than d3's min_duration
	reserve(t, c, booking("d3", 6.75, 8))
	free := freeSlots(t, c, "", "desks", h(-1), h(72), 0)
	want := []string{"d1 2h0m0s-72h0m0s", "d2 0s-20h0m0s", "d2 23h30m0s-72h0m0s", "d3 0s-5h0m0s", "d3 8h0m0s-72h0m0s", "d4 0s-72h0m0s"}
	if got := spellFrom(now, free); !slices.Equal(got, want) {
		t.Errorf("pool FreeSlots %v, want %v", got, want)
	}
	latest := map[string]time.Time{"d2": h(24)}
	for _, w := range free {
		checkOffered(t, c, "", []*pb.TimeWindow{w}, time.Hour, latest[w.GetResourceId()])
	}
	// Through the pool, 30 minutes from now: d1's notice refuses it, d2 takes it.
	resp, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "alice", PoolId: "desks", Start: at(0.5), End: at(1.5)}})
	if err != nil || resp.GetReservation().GetResourceId() != "d2" {
		t.Errorf("a pool booking in 30 minutes: %v %v, want d2", resp.GetReservation().GetResourceId(), err)
	}
}

// TestRuledFreeSlotsAgainstBruteForce: 30 random resources of capacity 1 to 3 with buffers of
// 0 to 2 slots and random booking rules (min_notice up to 2 hours, max_advance 2 to 15 hours
// or none, min_duration up to 2 hours or none), each with a random day of bookings made before
// the rules were put, some held, some cancelled, with the clock stopped 8 hours into the day.
// Four FreeSlots queries each, over gRPC, must answer what a scan of the bookings finds at
// 15-minute slots once it keeps the slots from now+min_notice (and from now), runs at least
// the larger min_duration long, and windows that start by now+max_advance. Every window that
// begins a run (at capacity 1, every window) holds a booking of the larger min_duration (at
// least a slot) at its start and one ending as late as the window and the advance allow,
// booked for real then cancelled.
func TestRuledFreeSlotsAgainstBruteForce(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	const nowSlot = 32
	now := slotTime(nowSlot)
	setup, c := stoppedReplica(t, db, now, true).client, stoppedReplica(t, db, now, false).client
	rng := rand.New(rand.NewPCG(18, 30))
	const layouts = 30
	var windowsChecked, bookingsChecked, atNotice, pastAdvance int
	for l := range layouts {
		id := fmt.Sprintf("ruled-%02d", l)
		capacity, before, after := 1+rng.IntN(3), rng.IntN(3), rng.IntN(3)
		gap := before + after
		res := &pb.Resource{Id: id, Capacity: int32(capacity),
			BufferBefore: durationpb.New(time.Duration(before) * slotLen), BufferAfter: durationpb.New(time.Duration(after) * slotLen)}
		if _, err := setup.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: res}); err != nil {
			t.Fatal(err)
		}
		booked := bookRandomly(t, setup, rng, rng.IntN(21), 12, func(b *pb.Reservation) { b.ResourceId = id })
		notice, advance := rng.IntN(9), 0
		if rng.IntN(4) > 0 {
			advance = 8 + rng.IntN(53)
		}
		ruleMin := time.Duration(0)
		if rng.IntN(3) > 0 {
			ruleMin = time.Duration(rng.IntN(121)) * time.Minute
		}
		res.MinNotice, res.MaxAdvance, res.MinDuration = durationpb.New(time.Duration(notice)*slotLen), durationpb.New(time.Duration(advance)*slotLen), durationpb.New(ruleMin)
		if _, err := setup.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: res}); err != nil {
			t.Fatal(err)
		}
		shifted := make([]int, daySlots+8)
		for _, b := range booked {
			from, to := int(b.GetStart().AsTime().Sub(base)/slotLen), int(b.GetEnd().AsTime().Sub(base)/slotLen)
			for s := from; s < to+gap; s++ {
				shifted[s]++
			}
		}
		used := make([]int, daySlots)
		for s := range used {
			used[s] = slices.Max(shifted[s : s+gap+1])
		}
		var latest time.Time
		if advance > 0 {
			latest = slotTime(nowSlot + advance)
		}
		for range 4 {
			from, to, minDur := randomQuery(rng)
			longest := max(minDur, ruleMin)
			var want []string
			for _, w := range bruteFree(id, capacity, used, max(from, nowSlot+notice), to, longest) {
				var r string
				var s, e, n int
				if _, err := fmt.Sscanf(w, "%s %d-%d %d", &r, &s, &e, &n); err != nil {
					t.Fatal(err)
				}
				if advance == 0 || s <= nowSlot+advance {
					want = append(want, w)
				}
			}
			resp, err := c.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: id, Start: timestamppb.New(slotTime(from)), End: timestamppb.New(slotTime(to)), MinDuration: durationpb.New(minDur)})
			if err != nil {
				t.Fatal(err)
			}
			got := windows(resp, id)
			if !slices.Equal(got, want) {
				t.Fatalf("layout %d, capacity %d, buffers %d+%d, notice %d, advance %d, min %s, booked %v, slots %d-%d, min %s:\ngot  %v\nwant %v",
					l, capacity, before, after, notice, advance, ruleMin, spell(booked), from, to, minDur, got, want)
			}
			windowsChecked += len(got)
			var starts []*pb.TimeWindow // the windows that begin a run
			for i, w := range resp.GetFree() {
				if i > 0 && resp.GetFree()[i-1].GetEnd().AsTime().Equal(w.GetStart().AsTime()) {
					continue
				}
				starts = append(starts, w)
				if w.GetStart().AsTime().Equal(slotTime(nowSlot+notice)) && notice > 0 {
					atNotice++
				}
			}
			for _, w := range resp.GetFree() {
				if !latest.IsZero() && w.GetEnd().AsTime().After(latest) {
					pastAdvance++
				}
			}
			bookingsChecked += checkOffered(t, c, id, starts, max(longest, slotLen), latest)
		}
	}
	t.Logf("%d layouts, %d windows checked, %d bookings of them made, %d windows start at the notice, %d run past the advance", layouts, windowsChecked, bookingsChecked, atNotice, pastAdvance)
	if windowsChecked < layouts || atNotice == 0 || pastAdvance == 0 {
		t.Errorf("the layouts should have many windows, some at the notice and some past the advance")
	}
}
