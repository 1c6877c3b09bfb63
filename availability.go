package reservation

import (
	"fmt"
	"slices"
	"time"
)

// Window is the half-open interval [Start, End). As a free window of FreeSlots, Available is
// the places left throughout it (0 stands for 1, on a resource of capacity 1).
type Window struct {
	Start, End time.Time
	Available  int
	ResourceID string // the unit, when the query was about a pool
}

// SlotQuery asks for the free windows of a resource inside [Start, End), each at least
// MinDuration long.
type SlotQuery struct {
	ResourceID  string
	PoolID      string // with no ResourceID: the free windows of each enabled unit of the pool
	Start, End  time.Time
	MinDuration time.Duration
	// LatestStart, when not zero, leaves out the windows that start after it; one that starts
	// by it keeps its end (a booking may start by it and run past it). Bookable sets it.
	LatestStart time.Time
}

// Bookable narrows q to where a reservation that is not BLOCKED could be booked on a resource
// with rules at now, as Rules.Check judges it then (the notice and advance through
// Rules.Starts, so that the rules are read in one place):
//   - the windows start no earlier than the earliest start the rules admit (now plus
//     min_notice), nor than q's start;
//   - they last at least the larger of q's and the rules' min_duration;
//   - those that start after the latest start the rules admit (now plus max_advance) are left
//     out (LatestStart); one that starts by it keeps its end.
//
// max_duration cuts nothing: a free window longer than it still holds bookings of up to
// max_duration anywhere inside it. BLOCKED reservations, exempt from notice and advance, fit
// every window answered too, but may also fit where notice and advance leave none.
func (q SlotQuery) Bookable(rules Rules, now time.Time) SlotQuery {
	starts := rules.Starts(now)
	if starts.Earliest.After(q.Start) {
		q.Start = starts.Earliest
	}
	q.MinDuration = max(q.MinDuration, rules.MinDuration)
	if !starts.Latest.IsZero() && (q.LatestStart.IsZero() || starts.Latest.Before(q.LatestStart)) {
		q.LatestStart = starts.Latest
	}
	return q
}

// Empty reports whether no window can be answered to q: its window is empty, or its latest
// start is before its start.
func (q SlotQuery) Empty() bool {
	return !q.Start.Before(q.End) || (!q.LatestStart.IsZero() && q.LatestStart.Before(q.Start))
}

// startingBy leaves out of free the windows that start after q.LatestStart, if it is set.
func (q SlotQuery) startingBy(free []Window) []Window {
	if q.LatestStart.IsZero() {
		return free
	}
	return slices.DeleteFunc(free, func(w Window) bool { return w.Start.After(q.LatestStart) })
}

// Validate checks a slot query and names every field that is wrong.
func (q *SlotQuery) Validate() error {
	var v Violations
	if q.ResourceID == "" && q.PoolID != "" {
		v.ID("pool_id", q.PoolID)
	} else {
		v.ID("resource_id", q.ResourceID)
	}
	v.Window(q.Start, q.End, true)
	if q.MinDuration < 0 {
		v.Add("min_duration", fmt.Sprintf("must not be negative, got %s", q.MinDuration))
	}
	return v.Err()
}

// FreeWindows returns the parts of q's window where a reservation of a resource of capacity
// 1 whose buffers add up to gap (Policy.Gap) may be booked, in order, leaving out those
// shorter than q.MinDuration and those that start after q.LatestStart: where a new window's
// blocked window meets none of busy's, that is outside each of busy widened by gap on both
// sides. busy must be sorted by Start.
func FreeWindows(q SlotQuery, gap time.Duration, busy []*Reservation) []Window {
	if q.Empty() {
		return nil
	}
	var free []Window
	at := q.Start // everything before at is covered or already reported
	add := func(end time.Time) {
		if end.After(at) && end.Sub(at) >= q.MinDuration {
			free = append(free, Window{Start: at, End: end})
		}
	}
	for _, r := range busy {
		start, end := r.Start.Add(-gap), r.End.Add(gap)
		if !start.Before(q.End) {
			break
		}
		add(start)
		if end.After(at) {
			at = end
		}
	}
	if at.Before(q.End) {
		add(q.End)
	}
	return q.startingBy(free)
}

// FreePlaces returns the parts of q's window where a reservation may be booked beside busy
// (the live reservations of a resource of policy p) with at least one place left, each with
// Available: the places left throughout the windows booked inside it block. They are split
// where that number changes. Runs of time with a place left shorter than q.MinDuration are
// left out (a run is kept whole when it is long enough, however it splits); then so are the
// windows that start after q.LatestStart. With capacity 1 and no buffers this is FreeWindows,
// with Available 1.
//
// The count is taken as InTheWay takes it, over windows [Start, End+Gap): a booking of
// [s, e) fits where fewer than the capacity of those cover every instant of [s, e+Gap), so a
// run of such instants [a, b) holds bookings inside [a, b-Gap).
func FreePlaces(q SlotQuery, p Policy, busy []*Reservation) []Window {
	if q.Empty() {
		return nil
	}
	capacity := max(p.Capacity, 1)
	g := p.Gap()
	end := q.End.Add(g)
	// The count changes only where one of busy starts or its blocked window ends.
	edges := []time.Time{q.Start, end}
	for _, r := range busy {
		for _, t := range []time.Time{r.Start, r.End.Add(g)} {
			if t.After(q.Start) && t.Before(end) {
				edges = append(edges, t)
			}
		}
	}
	edges = sortedTimes(edges)
	var pieces []Window // with a place left, split where the count changes
	for i := 0; i+1 < len(edges); i++ {
		left := capacity - len(covering(edges[i], g, busy))
		if left <= 0 {
			continue
		}
		if n := len(pieces); n > 0 && pieces[n-1].End.Equal(edges[i]) && pieces[n-1].Available == left {
			pieces[n-1].End = edges[i+1]
			continue
		}
		pieces = append(pieces, Window{Start: edges[i], End: edges[i+1], Available: left})
	}
	var free []Window
	for i := 0; i < len(pieces); {
		j := i + 1 // pieces[i:j] is a run without a gap
		for j < len(pieces) && pieces[j].Start.Equal(pieces[j-1].End) {
			j++
		}
		run := pieces[i:j]
		from, stop := run[0].Start, run[len(run)-1].End.Add(-g)
		if stop.After(q.End) {
			stop = q.End
		}
		i = j
		if !stop.After(from) || stop.Sub(from) < q.MinDuration {
			continue
		}
		// A booking inside [x, y) blocks inside [x, y+g): the places left there are the
		// fewest of the pieces that meets, which change at the pieces' edges and g before them.
		cuts := []time.Time{from, stop}
		for _, pc := range run {
			for _, t := range []time.Time{pc.Start, pc.End, pc.Start.Add(-g), pc.End.Add(-g)} {
				if t.After(from) && t.Before(stop) {
					cuts = append(cuts, t)
				}
			}
		}
		cuts = sortedTimes(cuts)
		for k := 0; k+1 < len(cuts); k++ {
			x, y := cuts[k], cuts[k+1]
			left := capacity
			for _, pc := range run {
				if pc.Start.Before(y.Add(g)) && pc.End.After(x) {
					left = min(left, pc.Available)
				}
			}
			if n := len(free); n > 0 && free[n-1].End.Equal(x) && free[n-1].Available == left {
				free[n-1].End = y
				continue
			}
			free = append(free, Window{Start: x, End: y, Available: left})
		}
	}
	return q.startingBy(free)
}

// sortedTimes sorts ts and leaves out repeats.
func sortedTimes(ts []time.Time) []time.Time {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return slices.CompactFunc(ts, func(a, b time.Time) bool { return a.Equal(b) })
}

// UnitQuery narrows q to a resource of the catalogue at now, as FreeSlots answers it: its
// booking rules (Bookable) and its admission policy. ok is false when the resource offers
// nothing: it is disabled, or the rules leave the window empty. Both the database's
// FreeSlots and the read index's answer through it and ResourceFree, so that the rule is one.
func UnitQuery(q SlotQuery, res *Resource, now time.Time) (uq SlotQuery, p Policy, ok bool) {
	if res.Disabled {
		return q, Policy{}, false
	}
	uq = q.Bookable(res.Rules, now)
	return uq, PolicyOf(res), !uq.Empty()
}

// ResourceFree is the free windows of one resource of policy p beside busy (its live
// reservations within p's buffers of q's window, by start): FreePlaces above capacity 1,
// FreeWindows at 1.
func ResourceFree(q SlotQuery, p Policy, busy []*Reservation) []Window {
	if p.Capacity > 1 {
		return FreePlaces(q, p, busy)
	}
	return FreeWindows(q, p.Gap(), busy)
}

// MaxFreeSlotsRows bounds the reservations one FreeSlots reads, of one resource or of all the
// units of a pool: see repo.MaxFreeSlotsRows.
const MaxFreeSlotsRows = 50_000

// SlotsFrom answers the FreeSlots query q from a read index's view, as the database's
// FreeSlots answers it (through UnitQuery and ResourceFree, the same rule); false when the
// view cannot (a resource it does not hold, a window before its horizon, more than
// MaxFreeSlotsRows reservations), and the database must.
func SlotsFrom(v ReadView, q SlotQuery) ([]Window, bool) {
	now := v.Now()
	if q.ResourceID != "" || q.PoolID == "" {
		res, ok := v.Resource(q.ResourceID)
		if !ok {
			return nil, false // the database knows what an unknown resource is (open or strict catalogue)
		}
		uq, p, ok := UnitQuery(q, res, now)
		if !ok {
			return nil, true
		}
		g := p.Gap()
		busy, ok := v.Overlapping([]string{res.ID}, uq.Start.Add(-g), uq.End.Add(g))
		if !ok || len(busy[res.ID]) > MaxFreeSlotsRows {
			return nil, false
		}
		return ResourceFree(uq, p, busy[res.ID]), true
	}
	var out []Window
	rows := 0
	for _, u := range v.Pool(q.PoolID) {
		uq, p, ok := UnitQuery(q, u, now)
		if !ok {
			continue
		}
		g := p.Gap()
		busy, ok := v.Overlapping([]string{u.ID}, uq.Start.Add(-g), uq.End.Add(g))
		if rows += len(busy[u.ID]); !ok || rows > MaxFreeSlotsRows {
			return nil, false
		}
		for _, w := range FreePlaces(uq, p, busy[u.ID]) {
			w.ResourceID = u.ID
			out = append(out, w)
		}
	}
	return out, true
}
