package queue

import (
	"context"
	"fmt"
	"time"
)

// DefaultStallBound is how long a change may wait for its seq before the feed counts as
// stalled (Options.StallBound).
const DefaultStallBound = 10 * time.Second

// healthInterval is how often each replica looks at the feed's progress.
const healthInterval = time.Second

// Health is what a replica knows of the feed's progress, as of its last look.
type Health struct {
	// UnstampedAge is how long the oldest change without a seq has waited, as this replica
	// saw it: from the first look that found it waiting. Zero when none waits.
	UnstampedAge time.Duration
	// StoredHead is the newest seq stored, as of the last look; Behind is how many seqs up to
	// it this replica has not read yet.
	StoredHead uint64
	Behind     uint64
	// Err is why the last look failed, if it did.
	Err error
	// LookedAt is when the look was made, by Options.Now; WaitingSince when it first saw the
	// oldest change still waiting for its seq (zero when none waits).
	LookedAt, WaitingSince time.Time
}

// Floor is the instant before which every committed change had a seq, as far as the look
// could tell: when a change waited, the interval between looks before it was first seen
// waiting (it may have committed any time since the look before); zero when none waited. A
// read index's view is no newer than it (readindex).
func (h Health) Floor() time.Time {
	if h.WaitingSince.IsZero() {
		return time.Time{}
	}
	return h.WaitingSince.Add(-healthInterval)
}

// progress is the watchdog's memory: when each newest waiting change was first seen, so the
// age of the oldest waiting one is known without trusting any clock but the replica's own.
type progress struct {
	seen []sighting // oldest first; newest ids increase
	// lastHead is the stored head at the previous look: a replica that has not read up to
	// it one look later is behind.
	lastHead uint64
}

type sighting struct {
	newest int64
	at     time.Time
}

// CheckHealth looks at the feed's progress once and returns what it found; the feed runs it
// every second. The feed is healthy when no change has waited for its seq longer than
// Options.StallBound and this replica has read every change stored a look ago.
func (q *Queue) CheckHealth(ctx context.Context) Health {
	oldest, newest, err := q.stored.Unstamped(ctx)
	var head uint64
	if err == nil {
		_, head, err = q.stored.Bounds(ctx)
	}
	now := q.opts.Now()
	q.mu.Lock()
	read := q.head
	q.mu.Unlock()

	q.healthMu.Lock()
	defer q.healthMu.Unlock()
	p := &q.progress
	if err != nil {
		q.health.Err = fmt.Errorf("look at the feed's progress: %w", err)
		return q.health
	}
	h := Health{StoredHead: head, LookedAt: now}
	if oldest == 0 {
		p.seen = p.seen[:0]
	} else {
		// Forget the sightings whose changes all have their seq now, keeping the last one
		// that covers the oldest waiting change.
		for len(p.seen) > 1 && p.seen[0].newest < oldest {
			p.seen = p.seen[1:]
		}
		if len(p.seen) == 0 || p.seen[len(p.seen)-1].newest < newest {
			p.seen = append(p.seen, sighting{newest, now})
		}
		if len(p.seen) > 0 && p.seen[0].newest >= oldest {
			h.UnstampedAge, h.WaitingSince = now.Sub(p.seen[0].at), p.seen[0].at
		}
		if len(p.seen) > 64 { // a flood: merge, keeping the oldest sighting's time
			p.seen = append(p.seen[:1], p.seen[len(p.seen)-32:]...)
		}
	}
	if read < p.lastHead {
		h.Behind = max(head, p.lastHead) - read
	}
	p.lastHead = head
	q.health = h
	return h
}

// Health returns what the last look at the feed's progress found.
func (q *Queue) Health() Health {
	q.healthMu.Lock()
	defer q.healthMu.Unlock()
	return q.health
}

// Stalled says why the feed cannot be shown to be current, or nil: changes wait for their seq
// longer than Options.StallBound, this replica lags behind the stored feed, or the last look
// failed.
func (q *Queue) Stalled() error {
	h := q.Health()
	switch {
	case h.Err != nil:
		return h.Err
	case h.UnstampedAge > q.opts.StallBound:
		return fmt.Errorf("a change has waited %s for its seq (bound %s): is a feed leader elected?", h.UnstampedAge.Round(time.Millisecond), q.opts.StallBound)
	case h.Behind > 0:
		return fmt.Errorf("this replica is %d changes behind the stored feed", h.Behind)
	}
	return nil
}

// watch looks at the feed's progress every healthInterval until ctx ends.
func (q *Queue) watch(ctx context.Context) {
	for {
		h := q.CheckHealth(ctx)
		if h.Err != nil && ctx.Err() == nil {
			q.log.WarnContext(ctx, "looking at the change feed's progress failed", "err", h.Err)
		}
		if !sleep(ctx, healthInterval) {
			return
		}
	}
}
