// Package reservation holds the domain of the reservation service: what a reservation is, the
// rules every reservation obeys, and the interfaces the other packages implement. It imports
// nothing of the project.
package reservation

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status is where a reservation stands in its life.
type Status int

// The statuses, numbered as on the wire.
const (
	StatusUnknown   Status = 0 // in a filter: any status; in a new reservation: PENDING
	StatusPending   Status = 1
	StatusConfirmed Status = 2
	StatusBlocked   Status = 3 // the owner of the resource took it out of service
)

// Valid reports whether s is one of the known statuses (Unknown included).
func (s Status) Valid() bool { return s >= StatusUnknown && s <= StatusBlocked }

func (s Status) String() string {
	switch s {
	case StatusUnknown:
		return "UNKNOWN"
	case StatusPending:
		return "PENDING"
	case StatusConfirmed:
		return "CONFIRMED"
	case StatusBlocked:
		return "BLOCKED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Limits of the values a reservation may hold.
const (
	MaxIDLen   = 64   // bytes, for user and resource ids
	MaxNoteLen = 4096 // bytes
)

// Times are stored in UTC with microsecond precision, within what MySQL's DATETIME holds:
// from the start of year 1000 to the end of year 9999, in Unix seconds.
const (
	minUnix = -30610224000 // 1000-01-01T00:00:00Z
	endUnix = 253402300800 // 10000-01-01T00:00:00Z, excluded
)

// Reservation is a booking of one resource for the half-open window [Start, End): a booking that
// ends when another starts does not overlap it.
type Reservation struct {
	ID         string
	UserID     string
	ResourceID string
	Status     Status
	Start      time.Time
	End        time.Time
	Note       string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	Version    int64 // 1 when created, bumped by every write
	// ExpiresAt is set on a hold: a PENDING reservation that lapses at this instant unless
	// confirmed first. From then on it blocks nothing, whether or not it was removed yet.
	ExpiresAt time.Time
	// PoolID is the pool of the resource when the reservation was made. In a new reservation
	// with no ResourceID, it asks for any free unit of that pool.
	PoolID string
	// SeriesID names the series ReserveSeries made the reservation in; "" for none.
	SeriesID string
}

// Expired reports whether r is a hold that has lapsed at now.
func (r *Reservation) Expired(now time.Time) bool {
	return !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// Overlaps reports whether r and o book the same resource at the same instant.
func (r *Reservation) Overlaps(o *Reservation) bool {
	return r.ResourceID == o.ResourceID && r.Start.Before(o.End) && o.Start.Before(r.End)
}

// Normalize puts the times in UTC at microsecond precision (what is stored) and turns an
// Unknown status into Pending.
func (r *Reservation) Normalize() {
	r.Start = Truncate(r.Start)
	r.End = Truncate(r.End)
	if r.Status == StatusUnknown {
		r.Status = StatusPending
	}
}

// Validate checks a new reservation (after Normalize) and names every field that is wrong.
func (r *Reservation) Validate() error {
	var v Violations
	v.ID("user_id", r.UserID)
	if r.ResourceID == "" && r.PoolID != "" {
		v.ID("pool_id", r.PoolID)
	} else {
		v.ID("resource_id", r.ResourceID)
	}
	if !r.Status.Valid() {
		v.Add("status", fmt.Sprintf("unknown status %d", int(r.Status)))
	}
	v.Window(r.Start, r.End, true)
	v.Note("note", r.Note)
	return v.Err()
}

// Truncate converts t to UTC at microsecond precision, as it is stored.
func Truncate(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// FormatTime writes t as RFC 3339 with the microseconds that are stored.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.999999Z07:00") }

// Ref points at one reservation for a write. Version, when non-zero, is the version the caller
// last saw: the write fails with EABORTED if the reservation has moved on since. Owner, when
// set, is the only user whose reservation may be found: another's is ENOTFOUND.
type Ref struct {
	ID      string
	Version int64
	Owner   string
	// Actor is who makes the change, as History and the feed record it: the authenticated
	// user; "" (auth off) records the reservation's user.
	Actor string
	// Reason is why, as the request gave it; "" for none.
	Reason string
}

// Owns is the ownership rule: a caller limited to owner finds, and may change, a reservation
// of userID only when it is theirs; an empty owner (an admin, or no auth) is not limited. What
// a caller may not find is NotFound, as if it did not exist.
func Owns(owner, userID string) bool { return owner == "" || owner == userID }

// NotFound is the ENOTFOUND error for the reservation id.
func NotFound(id string) error { return Errorf(ENOTFOUND, "reservation %q not found", id) }

// Filter selects the reservations that overlap [Start, End); a zero bound is unbounded and an
// empty field matches everything. Results are ordered by (Start, ID), descending when Desc.
type Filter struct {
	ResourceID string
	UserID     string
	Status     Status // Unknown: any
	Start      time.Time
	End        time.Time
	Desc       bool
	After      *Cursor // keyset: continue after this position in the order
	Limit      int     // at most this many; 0 means no limit
}

// Cursor is a position in a Filter's order.
type Cursor struct {
	Start time.Time
	ID    string
}

// Validate checks a filter and names every field that is wrong.
func (f *Filter) Validate() error {
	var v Violations
	if f.ResourceID != "" {
		v.ID("resource_id", f.ResourceID)
	}
	if f.UserID != "" {
		v.ID("user_id", f.UserID)
	}
	if !f.Status.Valid() {
		v.Add("status", fmt.Sprintf("unknown status %d", int(f.Status)))
	}
	v.Window(f.Start, f.End, false)
	if f.Limit < 0 {
		v.Add("limit", fmt.Sprintf("must not be negative, got %d", f.Limit))
	}
	return v.Err()
}

// Service is what the API offers; repo implements it on MySQL.
type Service interface {
	// Reserve makes the booking's reservations, all or none. It fails with ECONFLICT, naming
	// every existing reservation in the way, when a window overlaps another of the same resource.
	Reserve(ctx context.Context, b Booking) ([]*Reservation, error)
	// Confirm turns a PENDING reservation into a CONFIRMED one; a CONFIRMED one comes back unchanged.
	Confirm(ctx context.Context, ref Ref) (*Reservation, error)
	// Update changes what e names: the note, or the window and resource (a move, all or
	// nothing: ECONFLICT naming what is in the way of the new window, and nothing changed).
	Update(ctx context.Context, ref Ref, e Edit) (*Reservation, error)
	// Cancel removes a reservation, freeing its window, and returns what was removed.
	Cancel(ctx context.Context, ref Ref) (*Reservation, error)
	// Get returns one reservation by id.
	Get(ctx context.Context, id string) (*Reservation, error)
	// Find returns the reservations the filter selects, in its order. Lapsed holds are left out.
	Find(ctx context.Context, f Filter) ([]*Reservation, error)
	// FreeSlots returns the free windows of a resource, in order.
	FreeSlots(ctx context.Context, q SlotQuery) ([]Window, error)
}

// Locker serialises the writers of a resource across replicas so that they queue outside the
// database. It is an optimisation, not the guard: the database transaction is.
type Locker interface {
	// Lock takes the locks on keys, in the order given, waiting a bounded time. It fails with
	// EABORTED when a lock stays taken past the wait bound.
	Lock(ctx context.Context, keys ...string) (Unlock, error)
}

// Unlock releases what a Locker took.
type Unlock func(ctx context.Context)

// Violations collects the fields of a request that are wrong.
type Violations []FieldViolation

// Add records that field is wrong, and why.
func (v *Violations) Add(field, why string) { *v = append(*v, FieldViolation{field, why}) }

// ID checks a user or resource id: 1 to MaxIDLen bytes of printable UTF-8.
func (v *Violations) ID(field, s string) {
	switch {
	case s == "":
		v.Add(field, "is required")
	case len(s) > MaxIDLen:
		v.Add(field, fmt.Sprintf("must be at most %d bytes, got %d", MaxIDLen, len(s)))
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	case strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		v.Add(field, fmt.Sprintf("must be printable, got %q", s))
	}
}

// Note checks free text: at most MaxNoteLen bytes of UTF-8 without control characters other
// than tab and line breaks.
func (v *Violations) Note(field, s string) {
	switch {
	case len(s) > MaxNoteLen:
		v.Add(field, fmt.Sprintf("must be at most %d bytes, got %d", MaxNoteLen, len(s)))
	case !utf8.ValidString(s):
		v.Add(field, "must be valid UTF-8")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }) >= 0:
		v.Add(field, "must not contain control characters")
	}
}

// Time checks that t is within the range that can be stored; a zero t is an error only when
// required.
func (v *Violations) Time(field string, t time.Time, required bool) {
	switch {
	case t.IsZero():
		if required {
			v.Add(field, "is required")
		}
	case t.Unix() < minUnix || t.Unix() >= endUnix:
		v.Add(field, fmt.Sprintf("must be in the years 1000 to 9999, got %s", FormatTime(t)))
	}
}

// Window checks the times of a window [start, end) as fields "start" and "end": each storable,
// present when required, and start before end when both are given.
func (v *Violations) Window(start, end time.Time, required bool) {
	v.Time("start", start, required)
	v.Time("end", end, required)
	if !start.IsZero() && !end.IsZero() && !start.Before(end) {
		v.Add("end", fmt.Sprintf("must be after start (%s), got %s", FormatTime(start), FormatTime(end)))
	}
}

// Err returns nil when nothing was recorded and an EINVALID error naming the fields otherwise.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: v.String(), Fields: v}
}

func (v Violations) String() string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = f.Field + ": " + f.Description
	}
	return "invalid " + strings.Join(parts, "; ")
}

// FieldViolation says which field of a request is wrong, and why.
type FieldViolation struct {
	Field       string
	Description string
}
