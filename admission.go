package reservation

import (
	"slices"
	"time"
)

// The admission rule: a resource of capacity N holds at most N reservations at an instant.
// Every place that decides whether a window is free asks InTheWay (the store's write path,
// group commit, the precheck, the conflict cache's refusals, read back), so that rule lives
// in this file alone.

// InTheWay returns those of held (reservations that hold r's resource, or may) that r cannot
// be admitted beside on a resource of the capacity given (0 means 1), in held's order.
//
// With capacity 1 that is each one whose window overlaps r's. With a larger capacity N, r is
// admitted when at every instant of its window fewer than N of held overlap it (the peak
// concurrency, not the number of rows that overlap somewhere in the window); otherwise the
// ones returned are those that fill the resource at the first instant of r's window where N
// overlap.
func InTheWay(r *Reservation, capacity int, held []*Reservation) []*Reservation {
	var in []*Reservation
	for _, h := range held {
		if r.Overlaps(h) {
			in = append(in, h)
		}
	}
	if capacity <= 1 || len(in) == 0 {
		return in
	}
	if len(in) < capacity {
		return nil
	}
	if at, ok := FirstFull(r.Start, r.End, capacity, in); ok {
		return Covering(at, in)
	}
	return nil
}

// FirstFull returns the first instant of [start, end) at which at least capacity of rs
// cover it, if there is one. The count only rises where a window starts, so the instants to
// look at are start and the starts of rs inside the window.
func FirstFull(start, end time.Time, capacity int, rs []*Reservation) (time.Time, bool) {
	at := []time.Time{start}
	for _, h := range rs {
		if h.Start.After(start) && h.Start.Before(end) {
			at = append(at, h.Start)
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for _, t := range slices.Compact(at) {
		if len(Covering(t, rs)) >= capacity {
			return t, true
		}
	}
	return time.Time{}, false
}

// Covering returns those of rs whose window holds the instant t, in rs's order.
func Covering(t time.Time, rs []*Reservation) []*Reservation {
	var out []*Reservation
	for _, h := range rs {
		if !t.Before(h.Start) && t.Before(h.End) {
			out = append(out, h)
		}
	}
	return out
}

// Fits reports whether r can be admitted beside held on a resource of the capacity given.
func Fits(r *Reservation, capacity int, held []*Reservation) bool {
	return len(InTheWay(r, capacity, held)) == 0
}
