package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The group commit's hand-off, without a database: the groups are written by a function of
// the test.

// writeFunc writes groups as the test says.
type writeFunc func(ctx context.Context, jobs []*job)

func (f writeFunc) writeGroup(ctx context.Context, jobs []*job) func() {
	f(ctx, jobs)
	return func() {}
}

// TestGrouperGivesEachJobItsOutcome: many concurrent callers; each job is committed exactly
// once, in a group no larger than the size, one group at a time, and its caller gets the
// outcome commit set for it.
func TestGrouperGivesEachJobItsOutcome(t *testing.T) {
	const callers, size = 200, 8
	var (
		mu        sync.Mutex
		committed = map[*job]int{}
		running   atomic.Int32
		overlap   atomic.Bool
		largest   atomic.Int32
	)
	refused := errors.New("refused")
	g := &committer{size: size, write: writeFunc(func(_ context.Context, jobs []*job) {
		if running.Add(1) > groupWriters {
			overlap.Store(true)
		}
		defer running.Add(-1)
		if n := int32(len(jobs)); n > largest.Load() {
			largest.Store(n)
		}
		for _, j := range jobs {
			mu.Lock()
			committed[j]++
			mu.Unlock()
			j.err = nil
			if j.hold < 0 { // the test's mark for a job to refuse
				j.err = refused
			}
			close(j.done)
		}
	})}
	var wg sync.WaitGroup
	errs := make([]error, callers)
	jobs := make([]*job, callers)
	for i := range callers {
		jobs[i] = &job{ctx: t.Context(), hold: time.Duration(i%3 - 1)} // -1, 0, 1
		wg.Go(func() { errs[i] = g.do(t.Context(), jobs[i]) })
	}
	wg.Wait()
	for i, j := range jobs {
		if committed[j] != 1 {
			t.Errorf("job %d committed %d times, want once", i, committed[j])
		}
		if want := j.hold < 0; (errs[i] == refused) != want || (!want && errs[i] != nil) {
			t.Errorf("job %d: %v, want refused=%v", i, errs[i], want)
		}
	}
	if overlap.Load() {
		t.Errorf("more than %d groups committed at once", groupWriters)
	}
	if largest.Load() > size {
		t.Errorf("a group of %d, want at most %d", largest.Load(), size)
	}
	if g.leaders != 0 || len(g.queue) != 0 {
		t.Errorf("%d leaders and %d queued jobs left, want none", g.leaders, len(g.queue))
	}
}

// TestGrouperCallerGone: a caller whose context ends while its job waits in the queue gets
// its context's error, and the job is never committed.
func TestGrouperCallerGone(t *testing.T) {
	release := make(chan struct{})
	first := make(chan struct{})
	var committed sync.Map
	g := &committer{size: 64, write: writeFunc(func(_ context.Context, jobs []*job) {
		for _, j := range jobs {
			committed.Store(j, true)
		}
		select {
		case first <- struct{}{}:
			<-release // the first group takes its time
		default:
		}
		for _, j := range dropEnded(jobs) {
			close(j.done)
		}
	})}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := g.do(t.Context(), &job{ctx: t.Context(), keys: []string{"room"}}); err != nil {
			t.Errorf("the leader's job: %v", err)
		}
	})
	<-first // the leader is writing; what comes now waits in the queue
	ctx, cancel := context.WithCancel(t.Context())
	gone := &job{ctx: ctx, keys: []string{"room"}} // the leader's resource: it waits for that group
	done := make(chan error)
	go func() { done <- g.do(ctx, gone) }()
	for {
		g.mu.Lock()
		queued := len(g.queue)
		g.mu.Unlock()
		if queued == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("the gone caller got %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	if _, ok := committed.Load(gone); ok {
		t.Error("the gone caller's job was committed")
	}
}

// TestCommitterFreesWhatItTook: a job that picks other resources as soon as it is done (a
// pool call whose units were taken meanwhile) and queues again leaves none of the resources
// its groups took held: every job is written, and nothing stays busy.
func TestCommitterFreesWhatItTook(t *testing.T) {
	const callers, rounds = 32, 20
	g := &committer{size: 4, write: writeFunc(func(_ context.Context, jobs []*job) {
		for _, j := range jobs {
			close(j.done)
		}
	})}
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			j := &job{ctx: t.Context()}
			for r := range rounds {
				j.keys = []string{fmt.Sprint("unit-", (i+r)%5), fmt.Sprint("unit-", (i+r+1)%5)}
				if err := g.do(t.Context(), j); err != nil {
					t.Errorf("caller %d, round %d: %v", i, r, err)
				}
				j.keys = []string{"elsewhere"} // picked again, at once
			}
		})
	}
	wg.Wait()
	if len(g.busy) != 0 || g.leaders != 0 || len(g.queue) != 0 {
		t.Errorf("busy %v, %d leaders, %d queued; want none", g.busy, g.leaders, len(g.queue))
	}
}

// unlockingWriter writes groups as the test of the unlock's order says: the group of the job
// marked first holds its locks until another group has been written.
type unlockingWriter struct {
	c       *committer
	first   *job
	queued  int           // the first group is written once this many jobs wait in the queue
	written chan struct{} // closed when a group without the first job has been written
	mu      sync.Mutex
	order   []string // "write <key>" and "unlock <key>", as they happen
	once    sync.Once
}

func (w *unlockingWriter) note(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.order = append(w.order, s)
}

func (w *unlockingWriter) writeGroup(_ context.Context, jobs []*job) func() {
	for _, j := range jobs {
		if j == w.first {
			for { // the other jobs are queued behind this group before it is written
				w.c.mu.Lock()
				n := len(w.c.queue)
				w.c.mu.Unlock()
				if n == w.queued {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	first := false
	for _, j := range jobs {
		w.note("write " + j.keys[0])
		first = first || j == w.first
		close(j.done)
	}
	if !first {
		w.once.Do(func() { close(w.written) })
		return func() { w.note("unlock " + jobs[0].keys[0]) }
	}
	return func() {
		// Bounded, so that a committer that unlocks before it passes the lead on fails the
		// test instead of hanging it.
		select {
		case <-w.written:
		case <-time.After(10 * time.Second):
		}
		w.note("unlock " + w.first.keys[0])
	}
}

// TestCommitterUnlocksAfterPassingTheLead: the leader whose job is done passes the lead on
// before it releases its group's locks, so the next group, on other resources, is written
// meanwhile; a job on the group's own resources waits for the release.
func TestCommitterUnlocksAfterPassingTheLead(t *testing.T) {
	g := &committer{size: 2}
	first := &job{ctx: t.Context(), keys: []string{"a"}}
	w := &unlockingWriter{c: g, first: first, queued: 2, written: make(chan struct{})}
	g.write = w
	var wg sync.WaitGroup
	wg.Go(func() { g.do(t.Context(), first) })
	for { // first leads, and waits in writeGroup for the others to queue
		g.mu.Lock()
		leading := g.leaders == 1
		g.mu.Unlock()
		if leading {
			break
		}
		time.Sleep(time.Millisecond)
	}
	wg.Go(func() { g.do(t.Context(), &job{ctx: t.Context(), keys: []string{"a"}}) })
	wg.Go(func() { g.do(t.Context(), &job{ctx: t.Context(), keys: []string{"b"}}) })
	wg.Wait()
	at := func(s string, nth int) int { // where the nth s happened, -1 if not
		for i, o := range w.order {
			if o == s {
				if nth--; nth == 0 {
					return i
				}
			}
		}
		return -1
	}
	// b is written before the first a's locks are released, and the second a only after.
	if len(w.order) != 6 || at("write b", 1) > at("unlock a", 1) || at("write a", 2) < at("unlock a", 1) {
		t.Errorf("order %v, want b written before the first a's unlock and the second a after it", w.order)
	}
}
