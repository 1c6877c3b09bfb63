package reservation

import "time"

// Edit is what an Update changes of a stored reservation. A field left at its zero value stays
// as it is, so an Edit that sets only Note is the note-only Update of before.
type Edit struct {
	// Note, when not nil, replaces the note.
	Note *string
	// Start and End, when not zero, move the window; one may be set without the other.
	Start, End time.Time
	// ResourceID, when not "", moves the reservation to that resource.
	ResourceID string
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
