package reservation

import (
	"context"
	"fmt"
	"time"
)

// Op is the kind of write a change records.
type Op int

// The ops, numbered as on the wire.
const (
	OpCreate Op = 1
	OpUpdate Op = 2 // confirm or note
	OpDelete Op = 3 // cancel
)

// Change is one committed write as the change feed delivers it.
type Change struct {
	// Seq numbers the changes of all resources without gaps, in commit order; it is the same
	// on every replica, so a listener can resume from it anywhere.
	Seq uint64
	Op  Op
	// Reservation is the reservation as of the change; for OpDelete, as it was removed.
	Reservation *Reservation
	// CommittedAt is when the change was given its Seq.
	CommittedAt time.Time
}

// ChangeFilter selects the changes a listener receives.
type ChangeFilter struct {
	ResourceID string  // only this resource's changes; "" for all
	UserID     string  // only the changes of this user's reservations; "" for all
	After      *uint64 // start after this seq; nil for the changes committed from now on
}

// Selects reports whether the filter lets c through.
func (f *ChangeFilter) Selects(c *Change) bool {
	return (f.ResourceID == "" || c.Reservation.ResourceID == f.ResourceID) &&
		(f.UserID == "" || c.Reservation.UserID == f.UserID)
}

// Validate checks a change filter and names every field that is wrong.
func (f *ChangeFilter) Validate() error {
	var v Violations
	if f.ResourceID != "" {
		v.ID("resource_id", f.ResourceID)
	}
	return v.Err()
}

// Feed is the ordered, resumable stream of committed changes.
type Feed interface {
	// Subscribe starts a subscription. It fails with EOUTOFRANGE when f.After names changes
	// no longer retained, or a seq not yet assigned.
	Subscribe(ctx context.Context, f ChangeFilter) (Subscription, error)
}

// Subscription is one listener's position in the feed.
type Subscription interface {
	// After is the seq the subscription has delivered up to: where a reconnect resumes.
	After() uint64
	// Next waits for the next changes the filter selects and returns them in seq order. It
	// fails with EEXHAUSTED when the listener fell too far behind the live feed.
	Next(ctx context.Context) ([]*Change, error)
	// Close ends the subscription.
	Close()
}

// String names the op as logs and errors show it.
func (o Op) String() string {
	switch o {
	case OpCreate:
		return "CREATE"
	case OpUpdate:
		return "UPDATE"
	case OpDelete:
		return "DELETE"
	}
	return fmt.Sprintf("Op(%d)", int(o))
}
