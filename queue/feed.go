package queue

import (
	"context"
	"fmt"
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
	backoff := newBackoff(q.opts.PollInterval)
	var looked time.Time // when a poll last looked for waiting changes, for a mark (real clock)
	for {
		began := q.opts.Now()
		var oldest, newest int64
		var uerr error
		// A mark costs a statement. Polls come at every local stamp while writes run, so
		// the look is taken at most twice per PollInterval (every tick of an idle feed): a
		// mark is then at most that much older than it could be, and a busy feed is not
		// charged a statement per stamp.
		marking := q.opts.Marks && time.Since(looked) >= q.opts.PollInterval/2
		if marking {
			looked = time.Now()
			oldest, newest, uerr = q.stored.Unstamped(ctx)
		}
		n, err := q.read(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			q.log.WarnContext(ctx, "reading the change feed failed", "err", err)
			backoff.wait(ctx)
			continue
		case err == nil:
			backoff.reset()
			if n == pollBatch {
				continue // more are waiting
			}
			if marking && uerr == nil {
				q.mu.Lock()
				head := q.head
				q.mu.Unlock()
				q.markHead(head, began, oldest, newest)
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
	backoff := newBackoff(q.opts.PollInterval)
	for {
		err := q.restart(ctx, false)
		if err == nil {
			return true
		}
		q.log.WarnContext(ctx, "reading the change feed failed", "err", err)
		if !backoff.wait(ctx) {
			return false
		}
	}
}

// restart empties the ring and sets its head to the newest stored change. With diverged, the
// stored feed left the history the ring followed: every subscription made before is cut off.
func (q *Queue) restart(ctx context.Context, diverged bool) error {
	_, last, err := q.stored.Bounds(ctx)
	if err != nil {
		return err
	}
	var fp uint64
	if last > 0 {
		c, err := q.stored.At(ctx, last)
		if err != nil {
			return err
		}
		if c != nil {
			fp = c.Fingerprint()
		}
	}
	q.marksMu.Lock()
	q.marks, q.pending = nil, nil // seqs of another history, maybe
	q.marksMu.Unlock()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.head, q.headFP, q.held = last, fp, 0
	if diverged {
		q.epoch++
		q.diverged.Add(1) // counted before the subscribers it cuts off are woken
	}
	q.broadcast()
	return nil
}

// read appends the changes sequenced since the head to the ring and wakes the subscribers.
// It reads the head's own row too, and checks that it is still the change the ring holds: a
// failover to a replica that lacked changes gives their seqs to other changes, or has none
// up to the head. The ring then starts again from the stored feed, and its subscribers are
// cut off with ReasonFeedDiverged rather than given later seqs of another history.
func (q *Queue) read(ctx context.Context) (int, error) {
	q.mu.Lock()
	head, headFP := q.head, q.headFP
	q.mu.Unlock()
	from := head
	if head > 0 {
		from = head - 1
	}
	cs, err := q.stored.Read(ctx, from, math.MaxUint64, "", pollBatch+1)
	if err != nil {
		return 0, err
	}
	if head > 0 {
		switch {
		case len(cs) > 0 && cs[0].Seq == head && (headFP == 0 || cs[0].Fingerprint() == headFP):
			if headFP == 0 {
				q.mu.Lock()
				if q.head == head {
					q.headFP = cs[0].Fingerprint()
				}
				q.mu.Unlock()
			}
			cs = cs[1:]
		case len(cs) > 0 && cs[0].Seq == head:
			return 0, q.diverge(ctx, fmt.Sprintf("seq %d now names another change", head))
		default:
			first, last, err := q.stored.Bounds(ctx)
			if err != nil {
				return 0, err
			}
			if len(cs) == 0 || first <= head {
				return 0, q.diverge(ctx, fmt.Sprintf("the ring's head, seq %d, is not stored (the stored feed ends at seq %d)", head, last))
			}
			// Seqs are stamped without gaps and pruned only from the oldest end, so the
			// changes up to the head were pruned: this replica was away longer than the
			// retention. Start the ring again after the gap; subscribers behind it find out
			// when they read.
			q.log.WarnContext(ctx, "change feed was pruned past this replica's position", "head", head, "oldest", first)
			q.mu.Lock()
			q.head, q.headFP, q.held = cs[0].Seq-1, 0, 0
			q.mu.Unlock()
		}
	}
	if len(cs) == 0 {
		return 0, nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, c := range cs {
		if c.Seq != q.head+1 {
			break // a gap cannot happen, but nothing past one is delivered
		}
		q.ring[c.Seq%uint64(len(q.ring))] = c
		q.head, q.headFP = c.Seq, c.Fingerprint()
		q.held = min(q.held+1, len(q.ring))
	}
	q.lag.Store(int64(q.opts.Now().Sub(cs[len(cs)-1].CommittedAt)))
	q.broadcast()
	return len(cs), nil
}

// diverge starts the ring again from the stored feed and cuts off every subscription made
// before: the feed it followed is not the one stored now.
func (q *Queue) diverge(ctx context.Context, why string) error {
	if err := q.restart(ctx, true); err != nil {
		return err
	}
	q.log.ErrorContext(ctx, "the stored change feed left the history this replica had read (a failover lost changes?): listeners are cut off with FEED_DIVERGED", "why", why)
	return nil
}

// broadcast wakes every waiting subscriber. The caller holds q.mu.
func (q *Queue) broadcast() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// Subscribe starts a subscription after f.Resume (verified) or f.After, or after the newest
// change now.
func (q *Queue) Subscribe(ctx context.Context, f reservation.ChangeFilter) (reservation.Subscription, error) {
	// The epoch is taken first: a divergence found from here on cuts this subscription off.
	q.mu.Lock()
	epoch := q.epoch
	q.mu.Unlock()
	first, last, err := q.stored.Bounds(ctx)
	if err != nil {
		return nil, err
	}
	if f.Resume != nil {
		f.After = &f.Resume.Seq
	}
	after := last
	var fp uint64
	if f.After != nil {
		after = *f.After
		switch {
		case after > last && f.Resume != nil:
			return nil, reservation.DivergedError(
				"the cursor's seq %d is beyond the newest change stored, seq %d: this feed's history lacks changes the listener received (a failover?): read the reservations again, then listen from the newest change",
				after, last)
		case after > last:
			return nil, reservation.Errorf(reservation.EOUTOFRANGE, "after_seq %d is ahead of the newest change, seq %d", after, last)
		case first > 0 && after+1 < first:
			return nil, reservation.Errorf(reservation.EOUTOFRANGE,
				"changes after seq %d are no longer kept (the oldest is seq %d, retention %s): read the reservations again, then listen from the newest seq",
				after, first, q.opts.Retention)
		}
	}
	if f.Resume != nil && f.Resume.Seq > 0 {
		c, err := q.stored.At(ctx, f.Resume.Seq)
		if err != nil {
			return nil, err
		}
		if c == nil || c.Fingerprint() != f.Resume.Fingerprint {
			return nil, reservation.DivergedError(
				"seq %d names another change in this feed than the one the cursor names: the listener followed a history this feed lacks (a failover?): read the reservations again, then listen from the newest change",
				f.Resume.Seq)
		}
		fp = f.Resume.Fingerprint
	}
	if f.After == nil && last > 0 {
		c, err := q.stored.At(ctx, last)
		if err != nil {
			return nil, err
		}
		if c != nil {
			fp = c.Fingerprint()
		}
	}
	q.subCount.Add(1)
	return &subscription{q: q, filter: f, cursor: after, cursorFP: fp, epoch: epoch}, nil
}

// subscription is one subscriber's position. It replays from the database until it reaches
// the ring, then reads the ring. Between taking changes from the ring and asking for more it
// is live, and cut off if the ring moved past it meanwhile: it was too slow to keep up.
type subscription struct {
	q        *Queue
	filter   reservation.ChangeFilter
	cursor   uint64 // every change up to here was delivered or filtered out
	cursorFP uint64 // the fingerprint of the change at cursor; 0 when not known
	epoch    uint64 // the queue's epoch when the subscription started
	live     bool
	closed   bool
}

func (s *subscription) After() uint64 { return s.cursor }

// Position is the cursor a listener resumes from, verified.
func (s *subscription) Position() reservation.FeedCursor {
	return reservation.FeedCursor{Seq: s.cursor, Fingerprint: s.cursorFP}
}

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
		head, headFP, tail, wake, closed := q.head, q.headFP, q.head-uint64(q.held), q.wake, q.closed
		switch {
		case closed:
			q.mu.Unlock()
			return nil, reservation.Errorf(reservation.EUNAVAILABLE, "the change feed is shutting down: resume after seq %d", s.cursor)
		case s.epoch != q.epoch:
			q.mu.Unlock()
			return nil, reservation.DivergedError(
				"the stored change feed left the history this listener followed, after seq %d (a failover lost changes): read the reservations again, then listen from the newest change",
				s.cursor)
		case s.cursor < tail && s.live:
			q.mu.Unlock()
			q.cutOff.Add(1)
			return nil, reservation.Errorf(reservation.EEXHAUSTED,
				"listener fell more than %d changes behind the feed: resume after seq %d", len(q.ring), s.cursor)
		case s.cursor < tail:
			q.mu.Unlock()
			cs, err := s.replay(ctx, head, headFP)
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
	if end > s.cursor {
		s.cursor, s.cursorFP = end, s.q.ring[end%uint64(len(s.q.ring))].Fingerprint()
	}
	return out
}

// replay reads the selected changes after the cursor, up to through (whose change has the
// fingerprint throughFP, 0 if not known), from the database.
func (s *subscription) replay(ctx context.Context, through, throughFP uint64) ([]*reservation.Change, error) {
	cs, err := s.q.stored.Read(ctx, s.cursor, through, s.filter.ResourceID, replayBatch)
	if err != nil {
		return nil, err
	}
	// Checked after the read, so that a failover between the two cannot pass unseen: the
	// change at the cursor is still stored, and still the one this listener followed. Then
	// nothing after it was pruned either, as pruning deletes from the oldest end only.
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if len(cs) == replayBatch {
		last := cs[len(cs)-1]
		s.cursor, s.cursorFP = last.Seq, last.Fingerprint()
	} else {
		s.cursor, s.cursorFP = through, throughFP
	}
	return slices.DeleteFunc(cs, func(c *reservation.Change) bool { return !s.filter.Selects(c) }), nil
}

// check fails when the changes right after the cursor can no longer be read: pruned
// (EOUTOFRANGE), or the cursor's change gone or replaced (ReasonFeedDiverged).
func (s *subscription) check(ctx context.Context) error {
	if s.cursor > 0 {
		c, err := s.q.stored.At(ctx, s.cursor)
		if err != nil {
			return err
		}
		if c != nil {
			if s.cursorFP != 0 && c.Fingerprint() != s.cursorFP {
				return reservation.DivergedError(
					"seq %d now names another change than the one this listener followed (a failover lost changes): read the reservations again, then listen from the newest change",
					s.cursor)
			}
			return nil
		}
	}
	first, last, err := s.q.stored.Bounds(ctx)
	if err != nil {
		return err
	}
	switch {
	case first > s.cursor+1:
		return reservation.Errorf(reservation.EOUTOFRANGE,
			"changes after seq %d were pruned before they could be sent (the oldest is seq %d): read the reservations again, then listen from the newest seq",
			s.cursor, first)
	case s.cursor > 0 && (s.cursorFP != 0 || s.cursor > last):
		return reservation.DivergedError(
			"seq %d is no longer stored (the feed ends at seq %d): this listener followed a history the feed lacks (a failover lost changes): read the reservations again, then listen from the newest change",
			s.cursor, last)
	}
	return nil
}
