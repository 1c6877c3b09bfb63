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

// FreeWindows returns the parts of q's window that none of busy covers, in order, leaving out
// those shorter than q.MinDuration. busy must be sorted by Start.
func FreeWindows(q SlotQuery, busy []*Reservation) []Window {
	var free []Window
	at := q.Start // everything before at is covered or already reported
	add := func(end time.Time) {
		if end.After(at) && end.Sub(at) >= q.MinDuration {
			free = append(free, Window{Start: at, End: end})
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

// Freeplaces returns the parts of q's window where at least one of a resource's capacity
// places is left, split where the number left changes, each with Available. Runs of time with
// a place left shorter than q.MinDuration are left out (a run is kept whole when it is long
// enough, however it splits). busy are the live reservations of the resource; with capacity 1
// this is FreeWindows, with Available 1.
func FreePlaces(q SlotQuery, capacity int, busy []*Reservation) []Window {
	capacity = max(capacity, 1)
	// The count of busy changes only where one of them starts or ends.
	edges := []time.Time{q.Start, q.End}
	for _, r := range busy {
		for _, t := range []time.Time{r.Start, r.End} {
			if t.After(q.Start) && t.Before(q.End) {
				edges = append(edges, t)
			}
		}
	}
	slices.SortFunc(edges, func(a, b time.Time) int { return a.Compare(b) })
	edges = slices.Compact(edges)
	var pieces []Window // with a place left, split where the count changes
	for i := 0; i+1 < len(edges); i++ {
		left := capacity - len(Covering(edges[i], busy))
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
		if pieces[j-1].End.Sub(pieces[i].Start) >= q.MinDuration {
			free = append(free, pieces[i:j]...)
		}
		i = j
	}
	return free
}
