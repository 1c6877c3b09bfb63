package repo

import (
	"context"
	"fmt"
	"time"

	"reservation"
)

// reapBatch bounds the lapsed holds, and the forgotten requests, one Reap removes.
const reapBatch = 500

// Reap removes up to reapBatch holds that have lapsed, each in its own write that records a
// DELETE change, and forgets request outcomes older than the retention. It returns how many
// holds it removed. Replicas may reap at once: a hold another removed first is skipped.
func (s *Store) Reap(ctx context.Context) (int, error) {
	now := s.now()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM reservation_requests WHERE created_at < ? LIMIT ?",
		now.Add(-s.opts.RequestRetention), reapBatch); err != nil {
		return 0, classify(fmt.Errorf("forget old requests: %w", err))
	}
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, "SELECT id FROM reservations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", now, reapBatch); err != nil {
		return 0, classify(fmt.Errorf("find lapsed holds: %w", err))
	}
	reaped := 0
	for _, id := range ids {
		var removed bool // as of the transaction's last attempt
		_, err := s.modify(ctx, reservation.Ref{ID: id}, func(r *reservation.Reservation, now time.Time) (reservation.Op, error) {
			removed = r.Expired(now) // false: confirmed meanwhile
			if !removed {
				return 0, nil
			}
			return reservation.OpDelete, nil
		})
		switch {
		case err == nil && removed:
			reaped++
		case err != nil && reservation.ErrorCode(err) != reservation.ENOTFOUND:
			return reaped, fmt.Errorf("remove lapsed hold %s: %w", id, err)
		}
	}
	return reaped, nil
}

// RunReaper calls Reap every interval until ctx ends, at once again while it finds a full batch.
func (s *Store) RunReaper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.Reap(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "reaping lapsed holds failed", "err", err)
		}
		if n > 0 {
			s.log.DebugContext(ctx, "reaped lapsed holds", "count", n)
		}
		if n == reapBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
