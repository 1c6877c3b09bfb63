package reservation

import (
	"fmt"
	"time"
)

// Window is the half-open interval [Start, End).
type Window struct {
	Start, End time.Time
}

// SlotQuery asks for the free windows of a resource inside [Start, End), each at least
// MinDuration long.
type SlotQuery struct {
	ResourceID  string
	Start, End  time.Time
	MinDuration time.Duration
}

// Validate checks a slot query and names every field that is wrong.
func (q *SlotQuery) Validate() error {
	var v Violations
	v.ID("resource_id", q.ResourceID)
	v.Window(q.Start, q.End, true)
	if q.MinDuration < 0 {
		v.Add("min_duration", fmt.Sprintf("must not be negative, got %s", q.MinDuration))
	}
	return v.Err()
}

// FreeWindows returns the parts of q's window that none of busy covers, in order, leaving out
// those shorter than q.MinDuration. busy must be sorted by Start.
func FreeWindows(q SlotQuery, busy []*Reservation) []Window {
	var free []Window
	at := q.Start // everything before at is covered or already reported
	add := func(end time.Time) {
		if end.After(at) && end.Sub(at) >= q.MinDuration {
			free = append(free, Window{at, end})
		}
	}
	for _, r := range busy {
		if !r.Start.Before(q.End) {
			break
		}
		add(r.Start)
		if r.End.After(at) {
			at = r.End
		}
	}
	if at.Before(q.End) {
		add(q.End)
	}
	return free
}
