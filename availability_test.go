package reservation_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"reservation"
)

// TestFreeWindowsAgainstBruteForce compares reservation.FreeWindows with a minute-by-minute scan on random
// layouts: reservations that overlap each other (as lapsed holds can), touch, or stick out of
// the window; with buffers (gap) half of the time, a minute then being free when no booked
// minute is within gap of it.
func TestFreeWindowsAgainstBruteForce(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	minute := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 2000 {
		from, to := rng.IntN(100), 100+rng.IntN(200)
		q := reservation.SlotQuery{ResourceID: "r", Start: minute(from), End: minute(to), MinDuration: time.Duration(rng.IntN(20)) * time.Minute}
		gap := 0
		if trial%2 == 1 {
			gap = rng.IntN(12)
		}
		var busy []*reservation.Reservation
		taken := make([]bool, 400)
		for range rng.IntN(15) {
			s := rng.IntN(350)
			e := s + 1 + rng.IntN(40)
			busy = append(busy, &reservation.Reservation{Start: minute(s), End: minute(e)})
			for m := max(s-gap, 0); m < e+gap; m++ {
				taken[m] = true
			}
		}
		slices.SortFunc(busy, func(a, b *reservation.Reservation) int { return a.Start.Compare(b.Start) })

		var want []reservation.Window
		for m := from; m < to; {
			if taken[m] {
				m++
				continue
			}
			end := m
			for end < to && !taken[end] {
				end++
			}
			if w := (reservation.Window{Start: minute(m), End: minute(end)}); w.End.Sub(w.Start) >= q.MinDuration {
				want = append(want, w)
			}
			m = end
		}
		if got := reservation.FreeWindows(q, time.Duration(gap)*time.Minute, busy); !slices.Equal(got, want) {
			t.Fatalf("trial %d: window %d-%d, min %s, gap %d, busy %v:\ngot  %v\nwant %v", trial, from, to, q.MinDuration, gap, spans(busy, t0), got, want)
		}
	}
}

func spans(rs []*reservation.Reservation, t0 time.Time) [][2]int {
	var out [][2]int
	for _, r := range rs {
		out = append(out, [2]int{int(r.Start.Sub(t0).Minutes()), int(r.End.Sub(t0).Minutes())})
	}
	return out
}

func TestSlotQueryValidate(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		q    reservation.SlotQuery
		want []string
	}{
		{reservation.SlotQuery{ResourceID: "r", Start: t0, End: t0.Add(time.Hour)}, nil},
		{reservation.SlotQuery{}, []string{"end", "resource_id", "start"}},
		{reservation.SlotQuery{ResourceID: "r", Start: t0, End: t0, MinDuration: -time.Second}, []string{"end", "min_duration"}},
	} {
		if got := fields(tc.q.Validate()); !slices.Equal(got, tc.want) {
			t.Errorf("%+v: fields %v, want %v", tc.q, got, tc.want)
		}
	}
}

func TestBookingFingerprintAndBounds(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r := func(note string) *reservation.Reservation {
		return &reservation.Reservation{UserID: "u", ResourceID: "r", Status: reservation.StatusPending, Start: t0, End: t0.Add(time.Hour), Note: note}
	}
	a := reservation.Booking{Reservations: []*reservation.Reservation{r("x")}, RequestID: "k"}
	same := reservation.Booking{Reservations: []*reservation.Reservation{r("x")}, RequestID: "other id, same parameters"}
	for name, other := range map[string]reservation.Booking{
		"note":  {Reservations: []*reservation.Reservation{r("y")}},
		"hold":  {Reservations: []*reservation.Reservation{r("x")}, Hold: time.Minute},
		"count": {Reservations: []*reservation.Reservation{r("x"), r("x")}},
		// Lengths are part of the encoding: moving a byte from one string to the next differs.
		"split": {Reservations: []*reservation.Reservation{{UserID: "uu", ResourceID: "", Status: reservation.StatusPending, Start: t0, End: t0.Add(time.Hour), Note: "x"}}},
	} {
		if a.Fingerprint() == other.Fingerprint() {
			t.Errorf("a booking with another %s has the same fingerprint", name)
		}
	}
	if a.Fingerprint() != same.Fingerprint() {
		t.Error("the request id changed the fingerprint")
	}
	for hold, ok := range map[time.Duration]bool{0: true, time.Second: true, 24 * time.Hour: true, time.Millisecond: false, 25 * time.Hour: false, -time.Second: false} {
		b := reservation.Booking{Hold: hold}
		if err := b.Validate(time.Second, 24*time.Hour); (err == nil) != ok {
			t.Errorf("hold %s: %v", hold, err)
		}
	}
	long := reservation.Booking{RequestID: string(make([]byte, 65))}
	if got := fields(long.Validate(time.Second, time.Hour)); !slices.Equal(got, []string{"request_id"}) {
		t.Errorf("65-byte request id: fields %v", got)
	}
}

// TestFreePlacesAgainstBruteForce compares reservation.FreePlaces with a minute-by-minute
// count of places left on random layouts, capacities and buffers. With buffers a minute m
// can be booked when each minute of m's blocked window holds fewer than the capacity of the
// others' blocked windows; its places left are the fewest over those minutes. Counting in
// the frame where each blocked window starts at its booked start (every blocked window moves
// by the same before-buffer), that is the minutes m to m+before+after.
func TestFreePlacesAgainstBruteForce(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	minute := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 2000 {
		capacity := 1 + rng.IntN(4)
		from, to := rng.IntN(100), 100+rng.IntN(200)
		q := reservation.SlotQuery{ResourceID: "r", Start: minute(from), End: minute(to), MinDuration: time.Duration(rng.IntN(20)) * time.Minute}
		var before, after int
		if trial%2 == 1 {
			before, after = rng.IntN(6), rng.IntN(8)
		}
		p := reservation.Policy{Capacity: capacity, BufferBefore: time.Duration(before) * time.Minute, BufferAfter: time.Duration(after) * time.Minute}
		gap := before + after
		var busy []*reservation.Reservation
		used := make([]int, 400) // blocked windows over each minute, in the shifted frame
		for range rng.IntN(25) {
			s := rng.IntN(350)
			e := s + 1 + rng.IntN(40)
			busy = append(busy, &reservation.Reservation{Start: minute(s), End: minute(e)})
			for m := s; m < e+gap; m++ {
				used[m]++
			}
		}
		left := func(m int) int {
			n := capacity
			for x := m; x <= m+gap; x++ {
				n = min(n, max(capacity-used[x], 0))
			}
			return n
		}
		var want []reservation.Window
		for m := from; m < to; {
			if left(m) == 0 {
				m++
				continue
			}
			end := m // the run with a place left
			for end < to && left(end) > 0 {
				end++
			}
			if minute(end).Sub(minute(m)) >= q.MinDuration {
				for p := m; p < end; {
					e := p
					for e < end && left(e) == left(p) {
						e++
					}
					want = append(want, reservation.Window{Start: minute(p), End: minute(e), Available: left(p)})
					p = e
				}
			}
			m = end
		}
		if got := reservation.FreePlaces(q, p, busy); !slices.Equal(got, want) {
			t.Fatalf("trial %d: capacity %d, buffers %d+%d, window %d-%d, min %s, busy %v:\ngot  %v\nwant %v", trial, capacity, before, after, from, to, q.MinDuration, spans(busy, t0), got, want)
		}
	}
}

// TestBookableAgainstRulesCheck: on random layouts, capacities, buffers and booking rules at
// a random now, FreePlaces of a query narrowed by SlotQuery.Bookable answers what a
// minute-by-minute scan finds once the scan keeps only the minutes from now+min_notice, runs
// at least the larger min_duration long, and windows that start by now+max_advance. And every
// window that begins a run (at capacity 1, every window) holds a booking of the larger
// min_duration from its start, and one ending as late as the window and the advance allow,
// that Rules.Check admits at now and that meets too few of busy (Fits).
func TestBookableAgainstRulesCheck(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	minute := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rng := rand.New(rand.NewPCG(18, 5))
	var checked, noticed, advanced int
	for trial := range 2000 {
		capacity := 1 + rng.IntN(3)
		from, to := rng.IntN(100), 100+rng.IntN(200)
		q := reservation.SlotQuery{ResourceID: "r", Start: minute(from), End: minute(to), MinDuration: time.Duration(rng.IntN(20)) * time.Minute}
		before, after := rng.IntN(4), rng.IntN(6)
		p := reservation.Policy{Capacity: capacity, BufferBefore: time.Duration(before) * time.Minute, BufferAfter: time.Duration(after) * time.Minute}
		gap := before + after
		now := rng.IntN(250)
		notice, advance, minDur := rng.IntN(60), rng.IntN(200), rng.IntN(30)
		switch rng.IntN(4) { // a rule of each kind is often absent
		case 0:
			notice = 0
		case 1:
			advance = 0
		case 2:
			minDur = 0
		}
		rules := reservation.Rules{MinNotice: time.Duration(notice) * time.Minute, MaxAdvance: time.Duration(advance) * time.Minute, MinDuration: time.Duration(minDur) * time.Minute}
		var busy []*reservation.Reservation
		used := make([]int, 400)
		for range rng.IntN(20) {
			s := rng.IntN(350)
			e := s + 1 + rng.IntN(40)
			busy = append(busy, &reservation.Reservation{ResourceID: "r", Start: minute(s), End: minute(e)})
			for m := s; m < e+gap; m++ {
				used[m]++
			}
		}
		slices.SortFunc(busy, func(a, b *reservation.Reservation) int { return a.Start.Compare(b.Start) })
		left := func(m int) int {
			n := capacity
			for x := m; x <= m+gap; x++ {
				n = min(n, max(capacity-used[x], 0))
			}
			return n
		}
		first := from
		if notice > 0 {
			first = max(from, now+notice)
		}
		longest := max(q.MinDuration, rules.MinDuration)
		var want []reservation.Window
		for m := first; m < to; {
			if left(m) == 0 {
				m++
				continue
			}
			end := m
			for end < to && left(end) > 0 {
				end++
			}
			if minute(end).Sub(minute(m)) >= longest {
				for s := m; s < end; {
					e := s
					for e < end && left(e) == left(s) {
						e++
					}
					if advance == 0 || s <= now+advance {
						want = append(want, reservation.Window{Start: minute(s), End: minute(e), Available: left(s)})
					}
					s = e
				}
			}
			m = end
		}
		bq := q.Bookable(rules, minute(now))
		got := reservation.FreePlaces(bq, p, busy)
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d: capacity %d, buffers %d+%d, window %d-%d, min %s, now %d, rules %+v, busy %v:\ngot  %v\nwant %v",
				trial, capacity, before, after, from, to, q.MinDuration, now, rules, spans(busy, t0), got, want)
		}
		if capacity == 1 {
			if fw := reservation.FreeWindows(bq, p.Gap(), busy); !slices.Equal(fw, windowsOf(got)) {
				t.Fatalf("trial %d: FreeWindows %v, FreePlaces %v", trial, fw, got)
			}
		}
		for i, w := range got {
			if notice > 0 && w.Start.Before(minute(now+notice)) || advance > 0 && w.Start.After(minute(now+advance)) {
				t.Fatalf("trial %d: window %v starts outside the notice and advance", trial, w)
			}
			if i > 0 && got[i-1].End.Equal(w.Start) {
				continue // within a run: the run is what holds a booking of min_duration
			}
			d := max(longest, time.Minute)
			last := w.End.Add(-d)
			if advance > 0 && last.After(minute(now+advance)) {
				last = minute(now + advance)
			}
			if last.Before(w.Start) { // the rest of its run starts after the advance
				last = w.Start
			}
			for _, s := range []time.Time{w.Start, last} {
				r := &reservation.Reservation{ResourceID: "r", Status: reservation.StatusConfirmed, Start: s, End: s.Add(d)}
				if err := rules.Check(0, r, minute(now)); err != nil {
					t.Fatalf("trial %d: window %v offered, a booking of %s at %s: %v", trial, w, d, s, err)
				}
				if !reservation.Fits(r, p, busy) {
					t.Fatalf("trial %d: window %v offered, a booking of %s at %s does not fit", trial, w, d, s)
				}
				checked++
			}
			if notice > 0 && w.Start.Equal(minute(now+notice)) {
				noticed++
			}
			if advance > 0 && w.End.After(minute(now+advance)) {
				advanced++
			}
		}
	}
	t.Logf("%d bookings checked; %d windows start at the notice, %d run past the advance", checked, noticed, advanced)
	if checked == 0 || noticed == 0 || advanced == 0 {
		t.Errorf("the trials should check bookings, at the notice and across the advance")
	}
}

// windowsOf is ws with Available 0, as FreeWindows answers.
func windowsOf(ws []reservation.Window) []reservation.Window {
	out := make([]reservation.Window, len(ws))
	for i, w := range ws {
		out[i] = reservation.Window{Start: w.Start, End: w.End}
	}
	return out
}
