package cache_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"reservation"
	"reservation/cache"
)

var base = time.Date(2030, 3, 1, 9, 0, 0, 0, time.UTC)

func res(id, resource string, from, to float64, version int64) *reservation.Reservation {
	return &reservation.Reservation{
		ID: id, ResourceID: resource, UserID: "alice", Status: reservation.StatusPending, Version: version,
		Start: base.Add(time.Duration(from * float64(time.Hour))), End: base.Add(time.Duration(to * float64(time.Hour))),
	}
}

func change(op reservation.Op, r *reservation.Reservation) *reservation.Change {
	return &reservation.Change{Op: op, Reservation: r}
}

// ids lists the ids of what c finds in the way of a window of resource.
func ids(c *cache.Cache, resource string, from, to float64) []string {
	var out []string
	for _, r := range c.Overlapping(res("new", resource, from, to, 1)) {
		out = append(out, r.ID)
	}
	return out
}

func same(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

// following returns a cache that follows a feed that never sends anything.
func following(t testing.TB, opts cache.Options) *cache.Cache {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	c := cache.New(opts)
	f := &fakeFeed{subs: make(chan *fakeSub, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Follow(ctx, f); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "following", func() bool { return c.Stats().Following })
	return c
}

func TestOverlappingFindsOnlyWhatIsInTheWay(t *testing.T) {
	c := following(t, cache.Options{})
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)),
		change(reservation.OpCreate, res("b", "room", 5, 30, 1)), // long: found from far away
		change(reservation.OpCreate, res("c", "room", 40, 41, 1)),
		change(reservation.OpCreate, res("d", "hall", 0, 50, 1)))
	same(t, "inside a", ids(c, "room", 1, 1.5), "a")
	same(t, "touching a's end", ids(c, "room", 2, 3))
	same(t, "touching a's start", ids(c, "room", -1, 0))
	same(t, "inside the long b", ids(c, "room", 20, 21), "b")
	same(t, "across a, b and c", ids(c, "room", 1, 40.5), "a", "b", "c")
	same(t, "another resource", ids(c, "yard", 0, 50))
	if s := c.Stats(); s.Entries != 4 || s.Refused != 3 {
		t.Errorf("stats %+v, want 4 entries and 3 refusals", s)
	}
}

func TestApplyKeepsTheNewestVersion(t *testing.T) {
	c := following(t, cache.Options{})
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)))
	c.Apply(change(reservation.OpUpdate, res("a", "room", 0, 2, 2)))
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1))) // the feed's late copy of v1
	got := c.Overlapping(res("new", "room", 0, 1, 1))
	if len(got) != 1 || got[0].Version != 2 {
		t.Fatalf("got %+v, want version 2 only", got)
	}
	if r := got[0]; r.ID != "a" || r.ResourceID != "room" || !r.Start.Equal(base) || !r.End.Equal(base.Add(2*time.Hour)) {
		t.Errorf("got %+v, want a on room from 0h to 2h", r)
	}
	if n := c.Stats().Entries; n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
}

// A move (an UPDATE with another window, or another resource) lets go of the old window: it
// no longer proposes a refusal there, and the feed's late copy of the old version does not
// bring it back.
func TestApplyOfAMoveLetsGoOfTheOldWindow(t *testing.T) {
	c := following(t, cache.Options{})
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)))
	c.Apply(change(reservation.OpUpdate, res("a", "room", 1, 3, 2))) // overlapping its old window
	same(t, "the old window left", ids(c, "room", 0, 1))
	same(t, "the new window", ids(c, "room", 2, 3), "a")
	c.Apply(change(reservation.OpUpdate, res("a", "hall", 5, 6, 3))) // to another resource
	same(t, "the old resource", ids(c, "room", 0, 3))
	same(t, "the new resource", ids(c, "hall", 5, 6), "a")
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)), change(reservation.OpUpdate, res("a", "room", 1, 3, 2)))
	same(t, "late copies of older versions", ids(c, "room", 0, 3))
	if n := c.Stats().Entries; n != 1 {
		t.Errorf("%d entries, want 1", n)
	}
}

func TestRemovedStaysRemoved(t *testing.T) {
	c := following(t, cache.Options{Tombstones: 50 * time.Millisecond})
	a := res("a", "room", 0, 2, 1)
	c.Apply(change(reservation.OpCreate, a))
	c.Apply(change(reservation.OpDelete, res("a", "room", 0, 2, 2)))
	same(t, "after the cancel", ids(c, "room", 0, 2))
	// The feed may still bring the create this replica made and cancelled itself.
	c.Apply(change(reservation.OpCreate, a))
	same(t, "the feed's late create", ids(c, "room", 0, 2))
	// A cancel the feed brought before this replica's own create was applied: the same.
	c.Apply(change(reservation.OpDelete, res("b", "room", 3, 4, 2)), change(reservation.OpCreate, res("b", "room", 3, 4, 1)))
	same(t, "a create after its cancel", ids(c, "room", 3, 4))
	if n := c.Stats().Entries; n != 0 {
		t.Errorf("%d entries, want 0", n)
	}
}

func TestHoldsAreLeftOut(t *testing.T) {
	c := following(t, cache.Options{})
	hold := res("h", "room", 0, 2, 1)
	hold.ExpiresAt = base
	c.Apply(change(reservation.OpCreate, hold))
	same(t, "a hold", ids(c, "room", 0, 2))
	confirmed := res("h", "room", 0, 2, 2)
	confirmed.Status = reservation.StatusConfirmed
	c.Apply(change(reservation.OpUpdate, confirmed))
	same(t, "the hold once confirmed", ids(c, "room", 0, 2), "h")
}

func TestEvictsTheLeastRecentlyUsed(t *testing.T) {
	c := following(t, cache.Options{MaxEntries: 10})
	for i := range 10 {
		c.Apply(change(reservation.OpCreate, res(fmt.Sprint("r", i), fmt.Sprint("room", i), 0, 1, 1)))
	}
	ids(c, "room0", 0, 1) // used: kept
	c.Apply(change(reservation.OpCreate, res("r10", "room10", 0, 1, 1)))
	if n := c.Stats().Entries; n > 9 {
		t.Fatalf("%d entries after going past 10, want at most 9", n)
	}
	same(t, "the resource just used", ids(c, "room0", 0, 1), "r0")
	same(t, "the resource just written", ids(c, "room10", 0, 1), "r10")
	same(t, "the resource used longest ago", ids(c, "room1", 0, 1))
}

func TestNotFollowingRefusesNothing(t *testing.T) {
	c := cache.New(cache.Options{})
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)))
	same(t, "before following", ids(c, "room", 0, 2))
}

// TestFollow: the feed's changes are taken in; a subscriber cut off for being slow resumes
// from its cursor and keeps what it holds; any other break empties the cache until it
// follows again from the newest change.
func TestFollow(t *testing.T) {
	c := cache.New(cache.Options{Logger: slog.New(slog.DiscardHandler)})
	f := &fakeFeed{subs: make(chan *fakeSub, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { c.Follow(ctx, f); close(done) }()

	first := f.next(t)
	if first.filter.After != nil {
		t.Fatalf("first subscription after %d, want from the newest change", *first.filter.After)
	}
	first.send(nil, change(reservation.OpCreate, res("a", "room", 0, 2, 1)))
	waitFor(t, "a taken in", func() bool { return len(ids(c, "room", 0, 2)) == 1 })

	first.send(reservation.Errorf(reservation.EEXHAUSTED, "too slow"))
	second := f.next(t)
	if a := second.filter.After; a == nil || *a != 1 {
		t.Fatalf("resumed after %v, want seq 1", a)
	}
	same(t, "after the resume", ids(c, "room", 0, 2), "a")

	second.send(reservation.Errorf(reservation.EUNAVAILABLE, "shutting down"))
	waitFor(t, "the cache emptied", func() bool { return !c.Stats().Following })
	same(t, "after the feed broke off", ids(c, "room", 0, 2))
	third := f.next(t)
	if third.filter.After != nil {
		t.Fatalf("after a break, subscribed after %d, want from the newest change", *third.filter.After)
	}
	cancel()
	<-done
}

// fakeFeed hands each subscription to the test.
type fakeFeed struct{ subs chan *fakeSub }

func (f *fakeFeed) Subscribe(ctx context.Context, filter reservation.ChangeFilter) (reservation.Subscription, error) {
	s := &fakeSub{filter: filter, in: make(chan step)}
	if filter.After != nil {
		s.after = *filter.After
	}
	f.subs <- s
	return s, nil
}

func (f *fakeFeed) next(t *testing.T) *fakeSub {
	t.Helper()
	select {
	case s := <-f.subs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
		return nil
	}
}

type step struct {
	cs  []*reservation.Change
	err error
}

type fakeSub struct {
	filter reservation.ChangeFilter
	in     chan step
	mu     sync.Mutex
	after  uint64
}

func (s *fakeSub) send(err error, cs ...*reservation.Change) { s.in <- step{cs, err} }

func (s *fakeSub) After() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.after
}

// Position knows no fingerprint: the cache resumes after the seq alone.
func (s *fakeSub) Position() reservation.FeedCursor { return reservation.FeedCursor{Seq: s.After()} }

func (s *fakeSub) Next(ctx context.Context) ([]*reservation.Change, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case st := <-s.in:
		s.mu.Lock()
		s.after += uint64(len(st.cs))
		s.mu.Unlock()
		return st.cs, st.err
	}
}

func (s *fakeSub) Close() {}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNotCurrentFindsNothing: while the cache's view is not known to be current, it proposes
// no refusal, and it keeps taking in changes for when it is again.
func TestNotCurrentFindsNothing(t *testing.T) {
	c := following(t, cache.Options{})
	c.Apply(change(reservation.OpCreate, res("a", "room", 0, 2, 1)))
	c.SetCurrent(false)
	same(t, "not current", ids(c, "room", 1, 3))
	c.Apply(change(reservation.OpCreate, res("b", "room", 3, 4, 1)))
	c.SetCurrent(true)
	same(t, "current again", ids(c, "room", 1, 3.5), "a", "b")
}
