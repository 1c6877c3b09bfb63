package queue

import (
	"context"
	"math"
	"slices"
	"time"

	"reservation"
)

// poll reads newly sequenced changes into the ring until ctx ends: at once when the local
// leader stamped some, otherwise every PollInterval.
func (q *Queue) poll(ctx context.Context) {
	tick := time.NewTicker(q.opts.PollInterval)
	defer tick.Stop()
	if !q.start(ctx) {
		return
	}
	backoff := q.opts.PollInterval
	for {
		n, err := q.read(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			q.slog.WarnContext(ctx, "reading the change feed failed", "err", err)
			sleep(ctx, backoff)
			backoff = min(2*backoff, 5*time.Second)
			continue
		case err == nil:
			backoff = q.opts.PollInterval
			if n == pollBatch {
				continue // more are waiting
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-q.pollNudge:
		case <-tick.C:
		}
	}
}

// start sets the ring's head to the newest stored seq: older changes are replayed from the
// database. It reports false if ctx ended first.
func (q *Queue) start(ctx context.Context) bool {
	backoff := q.opts.PollInterval
	for {
		_, last, err := q.log.Bounds(ctx)
		if err == nil {
			q.mu.Lock()
			q.head = last
			q.broadcast()
			q.mu.Unlock()
			return true
		}
		q.slog.WarnContext(ctx, "reading the change feed failed", "err", err)
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// read appends the changes sequenced since the head to the ring and wakes the subscribers.
func (q *Queue) read(ctx context.Context) (int, error) {
	q.mu.Lock()
	head := q.head
	q.mu.Unlock()
	cs, err := q.log.Read(ctx, head, math.MaxUint64, "", pollBatch)
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	if cs[0].Seq != head+1 {
		// Seqs are stamped without gaps and pruned only from the oldest end, so the changes
		// after the head were pruned: this replica was away longer than the retention. Start
		// the ring again after the gap; subscribers behind it find out when they read.
		first, _, err := q.log.Bounds(ctx)
		if err != nil {
			return 0, err
		}
		if first <= head+1 {
			q.slog.ErrorContext(ctx, "change feed has a gap", "after", head, "next", cs[0].Seq)
			return 0, nil
		}
		q.slog.WarnContext(ctx, "change feed was pruned past this replica's position", "head", head, "oldest", first)
		q.mu.Lock()
		q.head, q.held = cs[0].Seq-1, 0
		q.mu.Unlock()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range cs {
		if c.Seq != q.head+1 {
			break // a gap cannot happen, but nothing past one is delivered
		}
		q.ring[c.Seq%uint64(len(q.ring))] = c
		q.head = c.Seq
		q.held = min(q.held+1, len(q.ring))
	}
	q.lag.Store(int64(q.opts.Now().Sub(cs[len(cs)-1].CommittedAt)))
	q.broadcast()
	return len(cs), nil
}

// broadcast wakes every waiting subscriber. The caller holds q.mu.
func (q *Queue) broadcast() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// Subscribe starts a subscription after f.After, or after the newest change now.
func (q *Queue) Subscribe(ctx context.Context, f reservation.ChangeFilter) (reservation.Subscription, error) {
	first, last, err := q.log.Bounds(ctx)
	if err != nil {
		return nil, err
	}
	after := last
	if f.After != nil {
		after = *f.After
		switch {
		case after > last:
			return nil, reservation.Errorf(reservation.EOUTOFRANGE, "after_seq %d is ahead of the newest change, seq %d", after, last)
		case first > 0 && after+1 < first:
			return nil, reservation.Errorf(reservation.EOUTOFRANGE,
				"changes after seq %d are no longer kept (the oldest is seq %d, retention %s): read the reservations again, then listen from the newest seq",
				after, first, q.opts.Retention)
		}
	}
	q.subCount.Add(1)
	return &subscription{q: q, filter: f, cursor: after}, nil
}

// subscription is one subscriber's position. It replays from the database until it reaches
// the ring, then reads the ring. Between taking changes from the ring and asking for more it
// is live, and cut off if the ring moved past it meanwhile: it was too slow to keep up.
type subscription struct {
	q      *Queue
	filter reservation.ChangeFilter
	cursor uint64 // every change up to here was delivered or filtered out
	live   bool
	closed bool
}

func (s *subscription) After() uint64 { return s.cursor }

func (s *subscription) Close() {
	if !s.closed {
		s.closed = true
		s.q.subCount.Add(-1)
	}
}

func (s *subscription) Next(ctx context.Context) ([]*reservation.Change, error) {
	q := s.q
	for {
		q.mu.Lock()
		head, tail, wake, closed := q.head, q.head-uint64(q.held), q.wake, q.closed
		switch {
		case closed:
			q.mu.Unlock()
			return nil, reservation.Errorf(reservation.EUNAVAILABLE, "the change feed is shutting down: resume after seq %d", s.cursor)
		case s.cursor < tail && s.live:
			q.mu.Unlock()
			q.cutOff.Add(1)
			return nil, reservation.Errorf(reservation.EEXHAUSTED,
				"listener fell more than %d changes behind the feed: resume after seq %d", len(q.ring), s.cursor)
		case s.cursor < tail:
			q.mu.Unlock()
			cs, err := s.replay(ctx, head)
			if err != nil || len(cs) > 0 {
				return cs, err
			}
		case s.cursor < head:
			s.live = true
			cs := s.fromRing(head)
			q.mu.Unlock()
			if len(cs) > 0 {
				return cs, nil
			}
		default:
			// A subscriber waiting here is keeping pace: should a burst larger than the ring
			// come while it waits, it catches up from the database instead of being cut off.
			s.live = false
			q.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-wake:
			}
		}
	}
}

// fromRing takes the selected changes after the cursor from the ring, looking at ringBatch
// entries at most. The caller holds q.mu.
func (s *subscription) fromRing(head uint64) []*reservation.Change {
	var out []*reservation.Change
	end := min(head, s.cursor+ringBatch)
	for seq := s.cursor + 1; seq <= end; seq++ {
		if c := s.q.ring[seq%uint64(len(s.q.ring))]; s.filter.Selects(c) {
			out = append(out, c)
		}
	}
	s.cursor = end
	return out
}

// replay reads the selected changes after the cursor, up to through, from the database.
func (s *subscription) replay(ctx context.Context, through uint64) ([]*reservation.Change, error) {
	cs, err := s.q.log.Read(ctx, s.cursor, through, s.filter.ResourceID, replayBatch)
	if err != nil {
		return nil, err
	}
	// Pruning deletes from the oldest end only: if the oldest seq kept is still right after
	// the cursor, nothing this read needed had been deleted.
	first, _, err := s.q.log.Bounds(ctx)
	if err != nil {
		return nil, err
	}
	if first > s.cursor+1 {
		return nil, reservation.Errorf(reservation.EOUTOFRANGE,
			"changes after seq %d were pruned before they could be sent (the oldest is seq %d): read the reservations again, then listen from the newest seq",
			s.cursor, first)
	}
	if len(cs) == replayBatch {
		s.cursor = cs[len(cs)-1].Seq
	} else {
		s.cursor = through
	}
	return slices.DeleteFunc(cs, func(c *reservation.Change) bool { return !s.filter.Selects(c) }), nil
}
