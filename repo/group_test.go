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

func (f writeFunc) writeGroup(ctx context.Context, jobs []*job) { f(ctx, jobs) }

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
