package reservation

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
)

// Op is the kind of write a change records.
type Op int

// The ops, numbered as on the wire.
const (
	OpCreate Op = 1
	OpUpdate Op = 2 // confirm, note or move
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
	// RowID is the id of the change's stored row, which row-based replication carries to
	// every replica unchanged: with the reservation's id and the op it tells this change from
	// another one that a different history gave the same Seq (see FeedCursor).
	RowID int64
	// Actor is who made the change (Ref.Actor; the reservation's user with auth off;
	// ActorSystem for a hold that lapsed), and Reason why, as the request said.
	Actor  string
	Reason string
	// MovedFrom is the resource the reservation left, for a move across resources: its
	// Reservation names the resource it moved to. "" for every other change.
	MovedFrom string
}

// ActorSystem is the actor of the changes the service makes itself: a hold that lapsed.
const ActorSystem = "system"

// LapsedHold is the reason recorded, with ActorSystem, for the removal of a hold that lapsed.
const LapsedHold = "hold expired"

// Fingerprint names the change apart from its seq: a hash of its row id, op and reservation
// id. Two histories that gave one seq to different changes give it different fingerprints.
func (c *Change) Fingerprint() uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.BigEndian.PutUint64(b[:8], uint64(c.RowID))
	b[8] = byte(c.Op)
	h.Write(b[:])
	if c.Reservation != nil {
		h.Write([]byte(c.Reservation.ID))
	}
	return h.Sum64() | 1 // never 0, which means "not known"
}

// Cursor is the position after c, verifiable against the feed that resumes it.
func (c *Change) Cursor() FeedCursor { return FeedCursor{Seq: c.Seq, Fingerprint: c.Fingerprint()} }

// FeedCursor is a position in the feed that names its history: the seq delivered last and the
// fingerprint of that change. A feed resuming it checks that the change at Seq is still the
// same one, so a listener is never given a continuation of a history it did not follow (after
// a failover to a replica that had not received every change). Seq 0 with fingerprint 0 is
// the start of the feed.
type FeedCursor struct {
	Seq         uint64
	Fingerprint uint64
}

// cursorVersion starts every cursor string, so the form can change later.
const cursorVersion = "c1."

// String is the cursor's opaque form, as clients hold it.
func (c FeedCursor) String() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], c.Seq)
	binary.BigEndian.PutUint64(b[8:], c.Fingerprint)
	return cursorVersion + base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseFeedCursor reads a cursor's opaque form.
func ParseFeedCursor(s string) (FeedCursor, error) {
	rest, ok := strings.CutPrefix(s, cursorVersion)
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if !ok || err != nil || len(b) != 16 {
		return FeedCursor{}, fmt.Errorf("not a feed cursor: %q", s)
	}
	return FeedCursor{Seq: binary.BigEndian.Uint64(b[:8]), Fingerprint: binary.BigEndian.Uint64(b[8:])}, nil
}

// ReasonFeedDiverged is the Error.Reason of an EOUTOFRANGE given to a listener whose position
// belongs to a history the feed no longer holds: a failover lost changes it had received. It
// must read the reservations again and listen from the newest change.
const ReasonFeedDiverged = "FEED_DIVERGED"

// DivergedError is the EOUTOFRANGE a diverged listener gets.
func DivergedError(format string, args ...any) *Error {
	e := Errorf(EOUTOFRANGE, format, args...)
	e.Reason = ReasonFeedDiverged
	return e
}

// ChangeFilter selects the changes a listener receives.
type ChangeFilter struct {
	ResourceID string  // only this resource's changes, and the moves away from it; "" for all
	UserID     string  // only the changes of this user's reservations; "" for all
	After      *uint64 // start after this seq; nil for the changes committed from now on
	// Resume, when set, starts after its seq like After, once the feed has checked that the
	// change there is still the one the cursor names: otherwise Subscribe fails with
	// EOUTOFRANGE, Reason ReasonFeedDiverged.
	Resume *FeedCursor
}

// Selects reports whether the filter lets c through. A resource's listener hears the changes
// of its reservations, and the moves that take one away from it (MovedFrom): without them,
// what it holds would keep a reservation that is no longer there.
func (f *ChangeFilter) Selects(c *Change) bool {
	return (f.ResourceID == "" || c.Reservation.ResourceID == f.ResourceID || c.MovedFrom == f.ResourceID) &&
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
	// Position is After with the fingerprint of its change: the cursor a listener resumes
	// from, verified against the feed it resumes on. Its Fingerprint is 0 when the change is
	// not known (a subscription at the start of an empty feed, or one that cannot tell): such
	// a cursor is not given out.
	Position() FeedCursor
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
