package reservation

import (
	"slices"
	"time"
)

// The admission rule: a resource of capacity N holds at most N reservations at an instant,
// each counting over the window it blocks: its booked window widened by the resource's
// buffers. Every place that decides whether a window is free asks InTheWay (the store's write
// path, group commit, pools, the precheck, the conflict cache's refusals, read back, the
// capacity and buffer checks of PutResource, FreeSlots through Policy.Gap), so that rule
// lives in this file alone.

// Policy is what the admission rule weighs a resource's reservations by: how many may be
// there at once, and the buffers that widen the window each one blocks.
type Policy struct {
	Capacity                  int // 0 means 1
	BufferBefore, BufferAfter time.Duration
}

// PolicyOf is the admission policy of a resource.
func PolicyOf(r *Resource) Policy {
	return Policy{Capacity: r.Capacity, BufferBefore: r.BufferBefore, BufferAfter: r.BufferAfter}
}

// Gap is the least time from one reservation's end to the next one's start for their
// blocked windows not to overlap: the after-buffer of the first and the before-buffer of the
// second.
func (p Policy) Gap() time.Duration { return p.BufferBefore + p.BufferAfter }

// Blocks returns the window r blocks: [Start-BufferBefore, End+BufferAfter).
func (p Policy) Blocks(r *Reservation) (start, end time.Time) {
	return r.Start.Add(-p.BufferBefore), r.End.Add(p.BufferAfter)
}

// Meet reports whether the windows r and o block on their resource overlap: the same
// resource, and neither starts until Gap after the other ends.
func (p Policy) Meet(r, o *Reservation) bool {
	g := p.Gap()
	return r.ResourceID == o.ResourceID && r.Start.Before(o.End.Add(g)) && o.Start.Before(r.End.Add(g))
}

// InTheWay returns those of held (reservations that hold r's resource, or may) that r cannot
// be admitted beside on a resource of policy p, in held's order.
//
// With capacity 1 that is each one whose blocked window overlaps r's. With a larger capacity
// N, r is admitted when at every instant of its blocked window fewer than N blocked windows of
// held overlap it (the peak concurrency, not the number of rows that overlap somewhere in the
// window); otherwise the ones returned are those that fill the resource at the first instant
// of r's blocked window where N overlap.
//
// Every blocked window is its booked one moved by the same before-buffer, so the count is
// taken over the windows [Start, End+Gap): the same instants, shifted alike.
func InTheWay(r *Reservation, p Policy, held []*Reservation) []*Reservation {
	var in []*Reservation
	for _, h := range held {
		if p.Meet(r, h) {
			in = append(in, h)
		}
	}
	capacity := max(p.Capacity, 1)
	if capacity <= 1 || len(in) == 0 {
		return in
	}
	if len(in) < capacity {
		return nil
	}
	g := p.Gap()
	if at, ok := firstFull(r.Start, r.End.Add(g), capacity, g, in); ok {
		return covering(at, g, in)
	}
	return nil
}

// Fits reports whether r can be admitted beside held on a resource of policy p.
func Fits(r *Reservation, p Policy, held []*Reservation) bool {
	return len(InTheWay(r, p, held)) == 0
}

// FirstFull returns the first instant of [start, end) at which at least p's capacity of the
// windows rs block cover it, if there is one; the instant is one of a blocked window (what
// Blocks says), and Full names those that cover it.
func FirstFull(start, end time.Time, p Policy, rs []*Reservation) (time.Time, []*Reservation, bool) {
	g := p.Gap()
	// In the frame where every blocked window starts at its booked start.
	at, ok := firstFull(start.Add(p.BufferBefore), end.Add(p.BufferBefore), max(p.Capacity, 1), g, rs)
	if !ok {
		return time.Time{}, nil, false
	}
	return at.Add(-p.BufferBefore), covering(at, g, rs), true
}

// firstFull returns the first instant of [start, end) at which at least capacity of the
// windows [Start, End+gap) of rs cover it, if there is one. The count only rises where a
// window starts, so the instants to look at are start and the starts of rs inside the window.
func firstFull(start, end time.Time, capacity int, gap time.Duration, rs []*Reservation) (time.Time, bool) {
	at := []time.Time{start}
	for _, h := range rs {
		if h.Start.After(start) && h.Start.Before(end) {
			at = append(at, h.Start)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for _, t := range slices.Compact(at) {
		if len(covering(t, gap, rs)) >= capacity {
			return t, true
		}
	}
	return time.Time{}, false
}

// covering returns those of rs whose window [Start, End+gap) holds the instant t, in rs's
// order.
func covering(t time.Time, gap time.Duration, rs []*Reservation) []*Reservation {
	var out []*Reservation
	for _, h := range rs {
		if !t.Before(h.Start) && t.Before(h.End.Add(gap)) {
			out = append(out, h)
		}
	}
	return out
}
