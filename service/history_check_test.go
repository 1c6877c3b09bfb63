package service_test

import (
	"strings"
	"testing"
	"time"
)

// Hand-made histories for checkHistory: a clock of whole ticks, and windows in half-hour
// slots from base.

func hTick(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func hWin(from, to int) histWindow { return histWindow{base.Add(time2(from)), base.Add(time2(to))} }

// hMade is a Reserve of resource, sent at sent and acknowledged at came with the id given.
func hMade(sent, came int, id, resource string, from, to int) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opReserve, Outcome: outOK,
		Items: []histItem{{Resource: resource, histWindow: hWin(from, to)}}, Booked: []histBooked{{ID: id, Resource: resource, histWindow: hWin(from, to)}}}
}

// hPooled is a Reserve of a unit of pool, acknowledged on unit.
func hPooled(sent, came int, id, pool, unit string, from, to int) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opReserve, Outcome: outOK,
		Items: []histItem{{Pool: pool, histWindow: hWin(from, to)}}, Booked: []histBooked{{ID: id, Resource: unit, histWindow: hWin(from, to)}}}
}

// hLost is a Reserve of resource whose outcome is unknown.
func hLost(sent, came int, resource string, from, to int) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opReserve, Outcome: outUnknown, Items: []histItem{{Resource: resource, histWindow: hWin(from, to)}}}
}

// hRefused is a Reserve of resource refused with a conflict naming named.
func hRefused(sent, came int, resource string, from, to int, named ...histNamed) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opReserve, Outcome: outConflict,
		Items: []histItem{{Resource: resource, histWindow: hWin(from, to)}}, Named: named}
}

func hPoolFull(sent, came int, pool string, from, to int) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opReserve, Outcome: outPoolFull, Items: []histItem{{Pool: pool, histWindow: hWin(from, to)}}}
}

func hCancel(sent, came int, id string) histCall {
	return histCall{Invoked: hTick(sent), Returned: hTick(came), Op: opCancel, ID: id, Outcome: outOK}
}

// hNamed is a reservation a conflict names in the way of its first item.
func hNamed(id string, from, to int) histNamed { return histNamed{ID: id, histWindow: hWin(from, to)} }

// The checker reports each answer no order of the calls explains, and only those.
func TestHistoryChecker(t *testing.T) {
	garage := inventory{Capacity: map[string]int{"garage": 3}}
	level := inventory{Pools: map[string][]string{"level-1": {"spot-1", "spot-2", "spot-3"}}}
	full := []histCall{ // three of garage's three places taken in slots 2-3
		hMade(0, 1, "a", "garage", 0, 4),
		hMade(0, 2, "b", "garage", 1, 3),
		hMade(1, 3, "c", "garage", 2, 6),
	}
	with := func(calls ...histCall) []histCall { return append(append([]histCall(nil), full...), calls...) }
	for _, tc := range []struct {
		name  string
		inv   inventory
		calls []histCall
		want  []string // in the problems, in order; none for a history that passes
	}{
		{"a refusal when three places are taken", garage, with(hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6))), nil},
		{"a refusal when two of three places are taken", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 4),
			hMade(0, 2, "b", "garage", 1, 3),
			hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3)),
		}, []string{"take at most garage 2030-03-01T10:00:00Z–2030-03-01T10:30:00Z: 2 of 3 places", "names 2 reservations in the way of garage"}},
		{"three overlapping rows that never hold three places at once", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 2),
			hMade(0, 1, "b", "garage", 2, 4),
			hMade(0, 1, "c", "garage", 4, 6),
			hRefused(5, 6, "garage", 1, 5, hNamed("a", 0, 2), hNamed("b", 2, 4), hNamed("c", 4, 6)),
		}, []string{"1 of 3 places", "take at most 1 of its 3 places"}},
		{"a refusal justified only by a reservation cancelled before it began", garage,
			with(hCancel(10, 11, "c"), hRefused(12, 13, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6))),
			[]string{"2 of 3 places", "names c, which was not live then"}},
		{"a refusal while the cancel that frees its place is under way", garage,
			with(hCancel(10, 13, "c"), hRefused(12, 14, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6))), nil},
		{"a refusal justified only by a reservation sent after it came back", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 4),
			hMade(0, 2, "b", "garage", 1, 3),
			hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6)),
			hMade(7, 8, "c", "garage", 2, 6),
		}, []string{"2 of 3 places", "names c, which was not live then"}},
		{"a refusal by a reservation sent while it ran", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 4),
			hMade(0, 2, "b", "garage", 1, 3),
			hRefused(5, 7, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6)),
			hMade(6, 8, "c", "garage", 2, 6),
		}, nil},
		{"a Reserve whose outcome is unknown may fill the last place", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 4),
			hMade(0, 2, "b", "garage", 1, 3),
			hLost(3, 4, "garage", 2, 6),
			hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("x", 2, 6)),
		}, nil},
		{"a conflict naming a reservation that does not overlap it", garage,
			with(hMade(0, 1, "d", "garage", 8, 9), hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6), hNamed("d", 8, 9))),
			[]string{"names d (2030-03-01T13:00:00Z–2030-03-01T13:30:00Z), which does not overlap"}},
		{"a conflict naming a reservation nobody made", garage,
			with(hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("z", 2, 6))),
			[]string{"names z (2030-03-01T10:00:00Z–2030-03-01T12:00:00Z), which no call of the history made"}},
		{"a conflict naming a reservation with another window", garage,
			with(hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 5))),
			[]string{"names c with the window 2030-03-01T10:00:00Z–2030-03-01T11:30:00Z; it holds"}},
		{"a batch whose other item takes the last place", garage, []histCall{
			hMade(0, 1, "a", "garage", 0, 4),
			hMade(0, 2, "b", "garage", 1, 3),
			{Invoked: hTick(5), Returned: hTick(6), Op: opReserve, Outcome: outConflict,
				Items: []histItem{{Resource: "garage", histWindow: hWin(2, 3)}, {Resource: "garage", histWindow: hWin(2, 4)}},
				Named: []histNamed{{ID: "a", Item: 1, histWindow: hWin(0, 4)}, {ID: "b", Item: 1, histWindow: hWin(1, 3)}, {ID: "item-0", Item: 1, histWindow: hWin(2, 3)}}},
		}, nil},
		{"POOL_FULL with every unit taken", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-1", 0, 4),
			hMade(0, 1, "b", "spot-2", 2, 3),
			hPooled(0, 2, "c", "level-1", "spot-3", 3, 5),
			hPoolFull(5, 6, "level-1", 2, 4),
		}, nil},
		{"POOL_FULL with one unit free", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-1", 0, 4),
			hMade(0, 1, "b", "spot-2", 2, 3),
			hPooled(0, 2, "c", "level-1", "spot-3", 4, 5),
			hPoolFull(5, 6, "level-1", 2, 4),
		}, []string{"spot-3 2030-03-01T10:00:00Z–2030-03-01T11:00:00Z: 0 of 1 places"}},
		{"POOL_FULL with a unit freed before it began", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-1", 0, 4),
			hMade(0, 1, "b", "spot-2", 2, 3),
			hPooled(0, 2, "c", "level-1", "spot-3", 3, 5),
			hCancel(3, 4, "b"),
			hPoolFull(5, 6, "level-1", 2, 4),
		}, []string{"spot-2 2030-03-01T10:00:00Z–2030-03-01T11:00:00Z: 0 of 1 places"}},
		{"a pool booking whose outcome is unknown may hold any unit", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-1", 0, 4),
			hMade(0, 1, "b", "spot-2", 2, 3),
			{Invoked: hTick(0), Returned: hTick(9), Op: opReserve, Outcome: outUnknown, Items: []histItem{{Pool: "level-1", histWindow: hWin(3, 4)}}},
			hPoolFull(5, 6, "level-1", 2, 4),
		}, nil},
		{"a pool booking acknowledged on a unit outside the pool", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-9", 0, 4),
		}, []string{`acknowledged with a on "spot-9"`}},
		{"four reservations stored at once on three places", garage,
			with(hMade(2, 4, "d", "garage", 2, 3)),
			[]string{"4 reservations of garage (capacity 3) were stored at one instant"}},
		{"a fourth reservation acknowledged after a cancel was sent", garage,
			with(hCancel(3, 9, "a"), hMade(2, 4, "d", "garage", 2, 3)), nil},
		{"two pool bookings of one unit at once", level, []histCall{
			hPooled(0, 1, "a", "level-1", "spot-1", 0, 4),
			hPooled(2, 3, "b", "level-1", "spot-1", 3, 5),
		}, []string{"2 reservations of spot-1 (capacity 1) were stored at one instant"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := checkHistory(tc.inv, tc.calls).Problems
			if len(got) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d:\n  %s\ndoes not say %q", i, got[i], w)
				}
			}
		})
	}
}

// The figures a test logs count what the history holds.
func TestHistoryCheckerFigures(t *testing.T) {
	inv := inventory{Capacity: map[string]int{"garage": 3}}
	rep := checkHistory(inv, []histCall{
		hMade(0, 1, "a", "garage", 0, 4),
		hMade(0, 2, "b", "garage", 1, 3),
		hMade(1, 3, "c", "garage", 2, 6),
		hRefused(5, 6, "garage", 2, 3, hNamed("a", 0, 4), hNamed("b", 1, 3), hNamed("c", 2, 6)),
		hCancel(7, 8, "a"),
		hLost(9, 10, "garage", 0, 1),
	})
	if rep.Reserved != 3 || rep.Refused != 1 || rep.Cancelled != 1 || rep.Unknown != 1 || rep.NamedChecked != 3 || len(rep.Problems) != 0 {
		t.Errorf("report %+v, want 3 reserved, 1 refused, 1 cancelled, 1 unknown, 3 named checked, no problems", rep)
	}
}
