package reservation

import (
	"fmt"
	"time"
)

// Edit is what an Update changes of a stored reservation. A field left at its zero value stays
// as it is, so an Edit that sets only Note is the note-only Update of before.
type Edit struct {
	// Note, when not nil, replaces the note.
	Note *string
	// Start and End, when not zero, move the window; one may be set without the other.
	Start, End time.Time
	// ResourceID, when not "", moves the reservation to that resource.
	ResourceID string
	// MaxDuration, when not zero, bounds the length of the window the edit leaves: the
	// service's bound on every reservation, which a move must obey as a Reserve does.
	MaxDuration time.Duration
}

// Moves reports whether e changes the window or the resource.
func (e Edit) Moves() bool { return !e.Start.IsZero() || !e.End.IsZero() || e.ResourceID != "" }

// Apply returns r as e leaves it (a copy; r is not changed), times truncated as stored.
func (e Edit) Apply(r *Reservation) *Reservation {
	c := *r
	if e.Note != nil {
		c.Note = *e.Note
	}
	if !e.Start.IsZero() {
		c.Start = Truncate(e.Start)
	}
	if !e.End.IsZero() {
		c.End = Truncate(e.End)
	}
	if e.ResourceID != "" {
		c.ResourceID = e.ResourceID
	}
	return &c
}

// SetNote is the Edit that replaces the note alone.
func SetNote(note string) Edit { return Edit{Note: &note} }

// CheckWindow checks the window of m, the reservation as e leaves it (Apply): storable
// times, the start before the end, and no longer than e.MaxDuration. A wrong window is
// EINVALID naming the field e changes: "end" when e sets the end, else "start" (a start moved
// alone to or past the stored end).
func (e Edit) CheckWindow(m *Reservation) error {
	var v Violations
	v.Time("start", e.Start, false)
	v.Time("end", e.End, false)
	if len(v) > 0 {
		return v.Err()
	}
	field := "start"
	if !e.End.IsZero() {
		field = "end"
	}
	switch d := m.End.Sub(m.Start); {
	case d <= 0 && field == "end":
		v.Add(field, fmt.Sprintf("must be after start (%s), got %s", FormatTime(m.Start), FormatTime(m.End)))
	case d <= 0:
		v.Add(field, fmt.Sprintf("must be before end (%s), got %s", FormatTime(m.End), FormatTime(m.Start)))
	case e.MaxDuration > 0 && d > e.MaxDuration:
		v.Add(field, fmt.Sprintf("reservation lasts %s, longer than the %s allowed", d, e.MaxDuration))
	}
	return v.Err()
}
