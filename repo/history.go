package repo

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"reservation"
)

// The history (reservation_history) is the audit trail: every change of every reservation,
// with its actor and reason, inserted by record in the change's own transaction, beside the
// feed's row, and kept for Options.HistoryRetention however short the feed's retention is
// (the reaper prunes it: Reap). The feed numbers changes; the history does not keep the seq.

var _ reservation.Historian = (*Store)(nil)

// historyRow is a reservation_history row.
type historyRow struct {
	ID        int64     `db:"id"`
	Op        int       `db:"op"`
	Snapshot  []byte    `db:"snapshot"`
	Actor     string    `db:"actor"`
	Reason    string    `db:"reason"`
	CreatedAt time.Time `db:"created_at"`
}

// History returns every change of reservation id still kept, oldest first, each with its
// actor and reason; ENOTFOUND when none is kept. A change's CommittedAt is the time its write
// recorded (the write's clock, Options.Now), and its Seq is 0: the history does not keep the
// seq the feed gave it. The order is the reservation's version, which each change moves on by
// one, so it holds on every engine, however the engine hands out the rows' ids.
func (s *Store) History(ctx context.Context, id string) ([]*reservation.Change, error) {
	var rows []historyRow
	err := s.db.SelectContext(ctx, &rows,
		"SELECT id, op, snapshot, actor, reason, created_at FROM reservation_history WHERE reservation_id = ? ORDER BY id", id)
	if err != nil {
		return nil, classify(fmt.Errorf("read the history of reservation %s: %w", id, err))
	}
	if len(rows) == 0 {
		return nil, reservation.Errorf(reservation.ENOTFOUND, "no history of reservation %q is kept", id)
	}
	out := make([]*reservation.Change, len(rows))
	for i, h := range rows {
		var w row
		if err := json.Unmarshal(h.Snapshot, &w); err != nil {
			return nil, fmt.Errorf("history row %d: decode snapshot: %w", h.ID, err)
		}
		out[i] = &reservation.Change{Op: reservation.Op(h.Op), Reservation: w.reservation(), CommittedAt: h.CreatedAt.UTC(),
			Actor: h.Actor, Reason: h.Reason}
	}
	slices.SortStableFunc(out, func(a, b *reservation.Change) int {
		return cmp.Compare(a.Reservation.Version, b.Reservation.Version)
	})
	return out, nil
}
