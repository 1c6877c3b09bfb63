package queue

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"reservation/telemetry"
)

// sequence competes for leadership until ctx ends, and sequences while it leads.
func (q *Queue) sequence(ctx context.Context) {
	backoff := newBackoff(q.opts.StampInterval)
	for ctx.Err() == nil {
		won, err := q.leader.Elect(ctx, electWait)
		if err != nil {
			if ctx.Err() == nil {
				q.electionFailed(ctx, err)
			}
			backoff.wait(ctx)
			continue
		}
		if !won {
			continue
		}
		backoff.reset()
		q.leading.Store(true)
		q.log.InfoContext(ctx, "leading the change feed")
		err = q.lead(ctx)
		q.leader.Resign()
		q.leading.Store(false)
		if ctx.Err() == nil {
			q.log.WarnContext(ctx, "gave up leading the change feed", "err", err)
			sleep(ctx, backoff.next)
		}
	}
}

// lead stamps committed changes as they come until ctx ends or the database fails. Pruning
// runs beside it, so deleting a backlog of old changes never delays new ones.
func (q *Queue) lead(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go q.pruneEvery(ctx)
	stamp := time.NewTicker(q.opts.StampInterval)
	defer stamp.Stop()
	var began time.Time // of the last stamp
	for {
		if wait := q.opts.StampGap - time.Since(began); wait > 0 && !sleep(ctx, wait) {
			return nil
		}
		began = time.Now()
		span := telemetry.Begin(ctx, "feed.stamp")
		n, err := q.leader.Stamp(ctx, stampBatch)
		span.End(n > 0, &err, attribute.Int("changes", n))
		if err != nil {
			return err
		}
		if n > 0 {
			q.stamped.Add(int64(n))
			nudge(q.pollNudge)
			if n == stampBatch {
				continue // more are waiting
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.stampNudge:
		case <-stamp.C:
		}
	}
}

// pruneEvery deletes the changes older than the retention now and every PruneInterval.
func (q *Queue) pruneEvery(ctx context.Context) {
	for {
		before := q.opts.Now().Add(-q.opts.Retention)
		for {
			n, err := q.leader.Prune(ctx, before, pruneBatch)
			q.pruned.Add(int64(n))
			if err != nil && ctx.Err() == nil {
				q.log.WarnContext(ctx, "pruning the change feed failed", "err", err)
			}
			if err != nil || n < pruneBatch {
				break
			}
		}
		if !sleep(ctx, q.opts.PruneInterval) {
			return
		}
	}
}

// electionErrorEvery bounds how often a failing election is logged.
const electionErrorEvery = time.Minute

// electionFailed counts an election that failed with an error, and logs it at ERROR at most
// once every electionErrorEvery: while it fails, no replica may be stamping changes.
func (q *Queue) electionFailed(ctx context.Context, err error) {
	n := q.electionErrors.Add(1)
	now := time.Now().UnixNano()
	last := q.lastElectLog.Load()
	if last != 0 && now-last < int64(electionErrorEvery) || !q.lastElectLog.CompareAndSwap(last, now) {
		return
	}
	q.log.ErrorContext(ctx, "change feed election failed: changes may wait for their seq", "err", err, "failures", n)
}
