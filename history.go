package reservation

import (
	"context"
	"time"
)

// DefaultHistoryRetention is how long History keeps a change (reservationd's
// --history-retention), however short the feed's retention is.
const DefaultHistoryRetention = 400 * 24 * time.Hour

// Historian keeps the audit trail; repo.Store implements it.
type Historian interface {
	// History returns every change of reservation id still kept, oldest first, each with its
	// actor and reason; ENOTFOUND when none is kept. Seq is 0: the history does not keep the
	// seq the feed gave a change. CommittedAt is the time its write recorded.
	History(ctx context.Context, id string) ([]*Change, error)
}

// ReasonReservationCancelled is the Error.Reason of the ENOTFOUND a Get of a cancelled
// reservation, still kept in the history, answers.
const ReasonReservationCancelled = "RESERVATION_CANCELLED"

// Cancelled is the ENOTFOUND error of a Get of reservation id, cancelled at at by actor for
// reason. Its metadata says when and by whom.
func Cancelled(id string, at time.Time, actor, reason string) *Error {
	e := Errorf(ENOTFOUND, "reservation %q was cancelled at %s by %q", id, FormatTime(at), actor)
	e.Reason = ReasonReservationCancelled
	e.Metadata = map[string]string{"reservation_id": id, "cancelled_at": FormatTime(at), "actor": actor}
	if reason != "" {
		e.Metadata["reason"] = reason
	}
	return e
}
