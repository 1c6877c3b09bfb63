package reservation

// The admission rule: a resource holds at most one reservation at an instant. Every place that
// decides whether a window is free asks InTheWay (the store's write path, group commit, the
// precheck, the conflict cache), so a resource with a capacity changes this file alone.

// InTheWay returns those of held (reservations that hold r's resource, or may) that r cannot
// be admitted beside, in held's order: each one whose window overlaps r's.
func InTheWay(r *Reservation, held []*Reservation) []*Reservation {
	var in []*Reservation
	for _, h := range held {
		if r.Overlaps(h) {
			in = append(in, h)
		}
	}
	return in
}

// Fits reports whether r can be admitted beside held: nothing of it is in r's way.
func Fits(r *Reservation, held []*Reservation) bool { return len(InTheWay(r, held)) == 0 }
