// Package queuetest is an in-memory change log and leader election for tests of package
// queue's logic (ordering, resume, divergence, slow subscribers) without a database. It is a
// fake of pure logic: what the database guarantees (seqs stamped without gaps in commit order,
// one leader at a time, pruning from the oldest end that keeps the newest) it keeps with a
// mutex. The tests against MySQL (queue_test.go with repo.Changes) stay the proof that the
// database does the same.
package queuetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"reservation"
	"reservation/queue"
)

// Log is the stored change feed: rows appended by writers without a seq, stamped by the leader.
// Its zero value is not usable: call New.
type Log struct {
	now func() time.Time

	mu      sync.Mutex
	rows    []*row // by row id: stamped rows in seq order come first among the stored ones
	nextID  int64
	nextSeq uint64
	holder  string        // the leader's name; "" when none leads
	resign  chan struct{} // closed when the holder resigns, replaced after
}

type row struct {
	id int64
	c  reservation.Change // c.Seq is 0 until stamped
}

// New returns an empty log whose stamps read now (time.Now when nil).
func New(now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{now: now, nextID: 1, nextSeq: 1, resign: make(chan struct{})}
}

var _ queue.Log = (*Log)(nil)

// Append commits c without a seq, as a writer's transaction does, and returns its row id.
func (l *Log) Append(c reservation.Change) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := l.nextID
	l.nextID++
	c.Seq, c.RowID = 0, id
	l.rows = append(l.rows, &row{id: id, c: c})
	return id
}

// Failover keeps the stamped changes up to seq keep and loses the rest, stamped or not, as a
// failover to a replica that lacked them does: the next changes are stamped from keep+1 again,
// under new row ids, so their fingerprints differ from those of the lost ones.
func (l *Log) Failover(keep uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows = slices.DeleteFunc(l.rows, func(r *row) bool { return r.c.Seq == 0 || r.c.Seq > keep })
	l.nextSeq = keep + 1
	l.nextID += 1000
}

// Read returns up to limit changes with after < seq <= through in seq order, keeping for a
// resourceID only those its filter selects. Each is a copy, as a database read gives.
func (l *Log) Read(_ context.Context, after, through uint64, resourceID string, limit int) ([]*reservation.Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := reservation.ChangeFilter{ResourceID: resourceID}
	var out []*reservation.Change
	for _, r := range l.stamped() {
		if len(out) == limit {
			break
		}
		if r.c.Seq > after && r.c.Seq <= through && (resourceID == "" || f.Selects(&r.c)) {
			c := r.c
			out = append(out, &c)
		}
	}
	return out, nil
}

// stamped is the stamped rows in seq order. The caller holds l.mu.
func (l *Log) stamped() []*row {
	var out []*row
	for _, r := range l.rows {
		if r.c.Seq != 0 {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b *row) int { return int(a.c.Seq) - int(b.c.Seq) })
	return out
}

// Bounds returns the oldest and newest stored seq; 0, 0 when none is.
func (l *Log) Bounds(context.Context) (first, last uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stamped()
	if len(s) == 0 {
		return 0, 0, nil
	}
	return s[0].c.Seq, s[len(s)-1].c.Seq, nil
}

// At returns a copy of the change stored with seq, or nil.
func (l *Log) At(_ context.Context, seq uint64) (*reservation.Change, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rows {
		if seq != 0 && r.c.Seq == seq {
			c := r.c
			return &c, nil
		}
	}
	return nil, nil
}

// Unstamped returns the smallest and largest row ids still without a seq; 0, 0 when none.
func (l *Log) Unstamped(context.Context) (oldest, newest int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.rows {
		if r.c.Seq == 0 {
			if oldest == 0 {
				oldest = r.id
			}
			newest = r.id
		}
	}
	return oldest, newest, nil
}

// Stored returns copies of the stamped changes in seq order.
func (l *Log) Stored() []*reservation.Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*reservation.Change
	for _, r := range l.stamped() {
		c := r.c
		out = append(out, &c)
	}
	return out
}

// Leader returns the election of the replica name over l: one leader at a time.
func (l *Log) Leader(name string) queue.Leader { return &leader{l: l, name: name} }

type leader struct {
	l    *Log
	name string
}

// errNotLeader is what Stamp and Prune answer a replica that no longer leads.
var errNotLeader = errors.New("queuetest: not the leader")

func (e *leader) Elect(ctx context.Context, wait time.Duration) (bool, error) {
	l := e.l
	l.mu.Lock()
	if l.holder == "" || l.holder == e.name {
		l.holder = e.name
		l.mu.Unlock()
		return true, nil
	}
	resigned := l.resign
	l.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, nil
	case <-t.C:
		return false, nil
	case <-resigned:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == "" {
		l.holder = e.name
		return true, nil
	}
	return false, nil
}

// Stamp gives the next seqs to up to limit unstamped rows, in row order (commit order).
func (e *leader) Stamp(_ context.Context, limit int) (int, error) {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != e.name {
		return 0, errNotLeader
	}
	n := 0
	now := l.now()
	for _, r := range l.rows {
		if n == limit {
			break
		}
		if r.c.Seq == 0 {
			r.c.Seq, r.c.CommittedAt = l.nextSeq, now
			l.nextSeq++
			n++
		}
	}
	return n, nil
}

// Prune deletes up to limit of the oldest stamped changes committed before before, from the
// oldest end, and never the newest.
func (e *leader) Prune(_ context.Context, before time.Time, limit int) (int, error) {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != e.name {
		return 0, errNotLeader
	}
	s := l.stamped()
	n := 0
	for n < len(s)-1 && n < limit && s[n].c.CommittedAt.Before(before) {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	gone := map[*row]bool{}
	for _, r := range s[:n] {
		gone[r] = true
	}
	l.rows = slices.DeleteFunc(l.rows, func(r *row) bool { return gone[r] })
	return n, nil
}

func (e *leader) Resign() {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder == e.name {
		l.holder = ""
		close(l.resign)
		l.resign = make(chan struct{})
	}
}
