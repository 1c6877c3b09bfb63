// Package queue turns the rows of reservation_changes into the ordered, resumable feed that
// Listen subscribers tail.
//
// Writers insert their change rows without a seq, in their own transaction. One replica, the
// leader, elected through the database, gives committed rows the next seqs in the order it
// sees them commit (sequencer.go). Every replica polls for newly sequenced rows, keeps the
// newest in a ring, and wakes its subscribers, who each read from the ring at their own pace,
// or from the database while they replay older changes (feed.go).
package queue

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"reservation"
)

// Log is the stored change feed: repo.Changes.
type Log interface {
	// Read returns up to limit changes with after < seq <= through, in seq order; resourceID,
	// when not empty, keeps only those ChangeFilter.Selects lets through for that resource:
	// its reservations', and the moves away from it.
	Read(ctx context.Context, after, through uint64, resourceID string, limit int) ([]*reservation.Change, error)
	// Bounds returns the oldest and newest seq stored; 0, 0 when none is.
	Bounds(ctx context.Context) (first, last uint64, err error)
	// At returns the change stored with seq, or nil when there is none.
	At(ctx context.Context, seq uint64) (*reservation.Change, error)
	// Unstamped returns the smallest and largest ids of the committed changes still without a
	// seq; 0, 0 when none waits.
	Unstamped(ctx context.Context) (oldest, newest int64, err error)
}

// Leader sequences the stored changes while it leads: repo.Leader.
type Leader interface {
	// Elect waits up to wait for leadership and reports whether it was won.
	Elect(ctx context.Context, wait time.Duration) (bool, error)
	// Stamp gives the next seqs to up to limit committed changes that have none.
	Stamp(ctx context.Context, limit int) (int, error)
	// Prune deletes up to limit of the oldest changes committed before before.
	Prune(ctx context.Context, before time.Time, limit int) (int, error)
	// Resign gives leadership up.
	Resign()
}

// Options tune a Queue; the zero value is usable.
type Options struct {
	// PollInterval is how often a replica looks for newly sequenced changes when nothing
	// told it of one (default 20ms).
	PollInterval time.Duration
	// StampInterval is how often the leader looks for changes to sequence when no local
	// writer told it of one (default 20ms).
	StampInterval time.Duration
	// StampGap is the least time between the starts of two stamps (default DefaultStampGap;
	// negative: none). Each stamp is a transaction of its own; while writes keep coming, a
	// gap lets one stamp take the changes of several commits, at the cost of up to the gap
	// more before a change reaches the subscribers.
	StampGap time.Duration
	// Buffer is how many recent changes a replica keeps in memory (default 4096). A live
	// subscriber that falls further behind is cut off with EEXHAUSTED.
	Buffer int
	// Retention is how long changes are kept for subscribers that resume (default 7 days).
	Retention time.Duration
	// PruneInterval is how often the leader deletes changes older than Retention (default 1m).
	PruneInterval time.Duration
	// StallBound is how long a change may wait for its seq before the feed reports itself
	// stalled (default DefaultStallBound): see Stalled.
	StallBound time.Duration
	// Follow, when true, keeps this replica out of the leader election: it serves subscribers
	// but never sequences.
	Follow bool
	Logger *slog.Logger
	// Now is the clock pruning reads; nil means time.Now.
	Now func() time.Time
	// Marks, when true, has the poller record when it found the head of the stored feed with
	// every earlier commit stamped (MarkAt), at the cost of one more statement per poll: a
	// read index needs them.
	Marks bool
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultPollInterval = 20 * time.Millisecond // PollInterval and StampInterval
	// DefaultStampGap: rsvbench spread (16 clients, about 200 commits/s) with a gap of 10ms
	// took 0.2-0.4 fewer statements and 0.05 fewer commits per reservation than with none.
	DefaultStampGap      = 10 * time.Millisecond
	DefaultBuffer        = 4096
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPruneInterval = time.Minute
)

const (
	stampBatch  = 5000 // changes one stamp transaction sequences at most: a backlog drains in large steps (repo.BenchmarkStampBacklog)
	pollBatch   = 1000 // changes one poll reads at most
	replayBatch = 500  // changes a replaying subscriber reads from the database at once
	ringBatch   = 1024 // ring entries a subscriber looks at in one Next
	pruneBatch  = 1000 // changes one prune statement deletes at most
	electWait   = time.Second
)

// Queue is one replica's part of the change feed: a candidate sequencer, a poller, and the
// subscriptions it serves.
type Queue struct {
	stored Log // the change log in the database
	leader Leader
	opts   Options
	log    *slog.Logger

	stampNudge chan struct{}
	pollNudge  chan struct{}

	mu     sync.Mutex
	ring   []*reservation.Change // ring[seq % len(ring)]
	head   uint64                // newest seq in the ring
	headFP uint64                // the fingerprint of the change at head; 0 when not known
	held   int                   // how many seqs up to head the ring holds
	// epoch grows when the stored feed is found to have left the history the ring followed
	// (a failover to a replica that lacked changes): a subscription of an older epoch is cut
	// off with ReasonFeedDiverged.
	epoch  uint64
	wake   chan struct{} // closed when head moves or the queue stops
	closed bool

	healthMu sync.Mutex
	health   Health
	progress progress

	electionErrors atomic.Int64
	lastElectLog   atomic.Int64 // unix nanoseconds of the last election error logged

	leading                           atomic.Bool
	stamped, pruned, cutOff, subCount atomic.Int64
	diverged                          atomic.Int64
	lag                               atomic.Int64 // nanoseconds: see Stats.Lag

	// marks are the last moments a poll found the ring at the head of the stored feed,
	// oldest first, by seq: see MarkAt.
	marksMu sync.Mutex
	marks   []HeadMark
	pending *pendingMark // changes that waited for their seq when a poll began
}

// pendingMark is a poll's start while changes waited for their seq, the newest of them
// newest: once none up to newest waits, and the ring has read the stored feed to its end,
// every change committed before at is in the ring.
type pendingMark struct {
	at     time.Time
	newest int64
}

// HeadMark is a moment the poller found itself at the head of the stored feed: every change
// stamped before At has a seq up to Seq.
type HeadMark struct {
	Seq uint64
	At  time.Time
}

// maxMarks is how many HeadMarks a queue keeps: a reader at most that many polls behind the
// newest still finds the mark of its position.
const maxMarks = 256

// markHead is called after a poll read the stored feed to its end, up to seq; the poll began
// at began, when the changes without a seq had ids from oldest to newest (0, 0: none). It
// records a HeadMark for the earliest instant before which every committed change is known
// to be read: began itself when none waited, else the start of an earlier poll whose waiting
// changes have all had their seq since.
func (q *Queue) markHead(seq uint64, began time.Time, oldest, newest int64) {
	q.marksMu.Lock()
	defer q.marksMu.Unlock()
	if p := q.pending; p != nil && (oldest == 0 || oldest > p.newest) {
		q.mark(seq, p.at)
		q.pending = nil
	}
	switch {
	case oldest == 0:
		q.mark(seq, began)
	case q.pending == nil:
		q.pending = &pendingMark{began, newest}
	}
}

// mark records that every change committed before at is in the ring, up to seq. The caller
// holds q.marksMu.
func (q *Queue) mark(seq uint64, at time.Time) {
	if n := len(q.marks); n > 0 && q.marks[n-1].Seq == seq {
		if at.After(q.marks[n-1].At) {
			q.marks[n-1].At = at
		}
		return
	}
	q.marks = append(q.marks, HeadMark{seq, at})
	if len(q.marks) > maxMarks {
		q.marks = append(q.marks[:0], q.marks[len(q.marks)-maxMarks/2:]...)
	}
}

// MarkAt returns the newest moment a poll found the head of the stored feed at or before seq,
// by Options.Now: a reader that has applied every change up to seq holds every change
// stamped before At. The zero HeadMark means none is known.
func (q *Queue) MarkAt(seq uint64) HeadMark {
	q.marksMu.Lock()
	defer q.marksMu.Unlock()
	best := HeadMark{}
	for _, m := range q.marks {
		if m.Seq <= seq && m.At.After(best.At) {
			best = m
		}
	}
	return best
}

var _ reservation.Feed = (*Queue)(nil)

// New returns a Queue over the stored feed log, sequenced by leader while it leads.
func New(stored Log, leader Leader, opts Options) *Queue {
	opts.PollInterval = reservation.OrDefault(opts.PollInterval, DefaultPollInterval)
	opts.StampInterval = reservation.OrDefault(opts.StampInterval, DefaultPollInterval)
	if opts.StampGap == 0 {
		opts.StampGap = DefaultStampGap
	}
	opts.Buffer = reservation.OrDefault(opts.Buffer, DefaultBuffer)
	opts.Retention = reservation.OrDefault(opts.Retention, DefaultRetention)
	opts.PruneInterval = reservation.OrDefault(opts.PruneInterval, DefaultPruneInterval)
	opts.StallBound = reservation.OrDefault(opts.StallBound, DefaultStallBound)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Queue{
		stored: stored, leader: leader, opts: opts, log: opts.Logger,
		stampNudge: make(chan struct{}, 1),
		pollNudge:  make(chan struct{}, 1),
		ring:       make([]*reservation.Change, opts.Buffer),
		wake:       make(chan struct{}),
	}
}

// Run sequences (while this replica leads) and polls until ctx ends. Subscriptions fail with
// EUNAVAILABLE once it has returned.
func (q *Queue) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if !q.opts.Follow {
		wg.Go(func() { q.sequence(ctx) })
	}
	wg.Go(func() { q.watch(ctx) })
	q.poll(ctx)
	wg.Wait()
	q.mu.Lock()
	q.closed = true
	close(q.wake)
	q.mu.Unlock()
}

// Nudge tells the queue a change was just committed, so the leader sequences it now rather
// than at its next look. It never blocks.
func (q *Queue) Nudge() { nudge(q.stampNudge) }

func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Stats describe the queue now.
type Stats struct {
	Leading     bool   // this replica sequences the feed
	Head        uint64 // the newest seq this replica has read
	Stamped     int64  // changes this replica sequenced
	Pruned      int64  // changes this replica deleted past the retention
	Subscribers int64  // open subscriptions
	CutOff      int64  // subscriptions ended for falling too far behind
	// Diverged counts the times the stored feed was found to have left the history this
	// replica had read: a failover to a replica that lacked changes.
	Diverged int64
	// ElectionErrors counts elections that failed with an error, rather than finding that
	// another replica leads.
	ElectionErrors int64
	// Lag is how old the newest change was when this replica read it: the time from its
	// commit stamp to its reaching the ring.
	Lag time.Duration
}

// Stats returns the queue's figures.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	head := q.head
	q.mu.Unlock()
	return Stats{
		Leading: q.leading.Load(), Head: head, Stamped: q.stamped.Load(), Pruned: q.pruned.Load(),
		Subscribers: q.subCount.Load(), CutOff: q.cutOff.Load(), Diverged: q.diverged.Load(), ElectionErrors: q.electionErrors.Load(),
		Lag: time.Duration(q.lag.Load()),
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool { return reservation.Sleep(ctx, d) == nil }

// backoff is the wait after a failure: it starts at min, doubles after each failure up to
// maxBackoff, and starts again at min after a success.
type backoff struct{ min, next time.Duration }

const maxBackoff = 5 * time.Second

func newBackoff(min time.Duration) *backoff { return &backoff{min, min} }

// wait sleeps for the current wait or until ctx ends (reporting whether ctx is still live), and
// doubles the next one.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next
	b.next = min(2*b.next, maxBackoff)
	return sleep(ctx, d)
}

// reset starts again at min: what failed has worked.
func (b *backoff) reset() { b.next = b.min }
