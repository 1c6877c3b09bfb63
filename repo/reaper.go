package repo

import (
	"context"
	"fmt"
	"time"

	"reservation"
)

// reapBatch bounds the lapsed holds, and the forgotten requests, one Reap removes.
const reapBatch = 500

// historyBatch bounds the rows of the history one statement deletes, and historyRounds the
// statements one Reap runs: a Reap deletes at most 10,000 rows, in short transactions, so a
// backlog (a retention just shortened) is worked off over several Reaps without holding up
// the removal of lapsed holds. At one Reap a second, that is far above any write rate.
const (
	historyBatch  = 1000
	historyRounds = 10
)

// Reap removes up to reapBatch holds that have lapsed, each in its own write that records a
// DELETE change made by reservation.ActorSystem for reservation.LapsedHold, forgets request
// outcomes older than the request retention, and prunes the history of the changes older
// than the history retention (pruneHistory). It returns how many holds it removed. Replicas
// may reap at once: a hold another removed first is skipped, and a history row another
// deleted first is not found again.
func (s *Store) Reap(ctx context.Context) (int, error) {
	now := s.now()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM reservation_requests WHERE created_at < ? LIMIT ?",
		now.Add(-s.opts.RequestRetention), reapBatch); err != nil {
		return 0, classify(fmt.Errorf("forget old requests: %w", err))
	}
	if _, err := s.pruneHistory(ctx, now.Add(-s.opts.HistoryRetention)); err != nil {
		return 0, err
	}
	var ids []string
	if err := s.db.SelectContext(ctx, &ids, "SELECT id FROM reservations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?", now, reapBatch); err != nil {
		return 0, classify(fmt.Errorf("find lapsed holds: %w", err))
	}
	reaped := 0
	for _, id := range ids {
		var removed bool // as of the transaction's last attempt
		lapsed := reservation.Ref{ID: id, Actor: reservation.ActorSystem, Reason: reservation.LapsedHold}
		_, err := s.modify(ctx, lapsed, func(r *reservation.Reservation, now time.Time) (reservation.Op, error) {
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

// pruneHistory deletes the changes recorded in the history before before, historyBatch rows
// a statement, until a statement finds fewer or historyRounds have run, and returns how many
// it deleted. It runs in the reaper (every replica's, each --reap-interval), not in the feed's
// leader: the history's retention has nothing to do with the feed's.
func (s *Store) pruneHistory(ctx context.Context, before time.Time) (int, error) {
	deleted := 0
	for range historyRounds {
		res, err := s.db.ExecContext(ctx, "DELETE FROM reservation_history WHERE created_at < ? LIMIT ?", before, historyBatch)
		if err != nil {
			return deleted, classify(fmt.Errorf("prune the history before %s: %w", reservation.FormatTime(before), err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return deleted, classify(fmt.Errorf("prune the history: %w", err))
		}
		deleted += int(n)
		if n < historyBatch {
			break
		}
	}
	return deleted, nil
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
