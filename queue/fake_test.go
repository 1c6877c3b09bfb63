package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"reservation"
	"reservation/queue"
	"reservation/queue/queuetest"
)

// These tests run the feed's logic over queuetest's in-memory log and election: no server is
// needed, so `make check` runs them. queue_test.go runs the same logic against MySQL.

// fakeReplica runs a queue named name over log until the test ends; stop ends it earlier.
func fakeReplica(t *testing.T, log *queuetest.Log, name string, opts queue.Options) (*queue.Queue, func()) {
	t.Helper()
	opts.Logger = quiet
	q := queue.New(log, log.Leader(name), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	return q, stop
}

// commit appends a change of reservation id on resource, as a writer's transaction does, and
// nudges q, as the store's Committed hook does.
func commit(log *queuetest.Log, q *queue.Queue, id, resource string) {
	log.Append(reservation.Change{Op: reservation.OpCreate, Reservation: &reservation.Reservation{ID: id, ResourceID: resource, UserID: "u"}})
	q.Nudge()
}

// sameChanges fails the test unless got is want: the same seqs naming the same changes.
func sameChanges(t *testing.T, name string, got, want []*reservation.Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d changes, want %d", name, len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || got[i].Fingerprint() != want[i].Fingerprint() {
			t.Fatalf("%s: change %d is seq %d (%s), want seq %d (%s)", name, i, got[i].Seq, got[i].Reservation.ID, want[i].Seq, want[i].Reservation.ID)
		}
	}
}

// TestFakeOrderingAcrossReplicas: writers on three replicas commit concurrently while the
// leader is stopped halfway; every replica's subscribers receive one gapless sequence, the
// same on each, with each writer's changes in its commit order, and a resource's subscriber
// exactly that resource's changes.
func TestFakeOrderingAcrossReplicas(t *testing.T) {
	t.Parallel()
	log := queuetest.New(nil)
	var qs []*queue.Queue
	var stops []func()
	for _, name := range []string{"a", "b", "c"} {
		q, stop := fakeReplica(t, log, name, queue.Options{})
		qs, stops = append(qs, q), append(stops, stop)
	}
	var subs []reservation.Subscription
	for _, q := range qs {
		subs = append(subs, subscribe(t, q, ptr(0), ""))
	}

	const writers, each = 8, 50
	write := func(from, to int) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := from; i < to; i++ {
					commit(log, qs[(w+i)%len(qs)], fmt.Sprintf("w%d-%03d", w, i), fmt.Sprintf("r%d", (w+i)%3))
				}
			})
		}
		wg.Wait()
	}
	write(0, each/2)
	// The leader stops halfway (a crash or a deploy): another replica takes the election over.
	waitFor(t, "a leader", func() bool { return qs[0].Stats().Leading || qs[1].Stats().Leading || qs[2].Stats().Leading })
	leader := 0
	for i, q := range qs {
		if q.Stats().Leading {
			leader = i
		}
	}
	first := collect(t, subs[(leader+1)%3], writers*each/2)
	r1 := subscribe(t, qs[(leader+2)%3], ptr(0), "r1") // replays, then follows the ring
	stops[leader]()
	write(each/2, each)
	waitFor(t, "every change stamped by the new leader", func() bool { return len(log.Stored()) == writers*each })

	stored := log.Stored()
	if len(stored) != writers*each {
		t.Fatalf("%d changes stored, want %d", len(stored), writers*each)
	}
	for i, c := range stored {
		if c.Seq != uint64(i+1) {
			t.Fatalf("stored change %d has seq %d: the seqs have a gap", i, c.Seq)
		}
	}
	for i, sub := range subs {
		if i == leader {
			continue // stopped with its replica
		}
		got := collect(t, sub, len(stored)-len(first)*boolInt(i == (leader+1)%3))
		if i == (leader+1)%3 {
			got = append(first, got...)
		}
		sameChanges(t, fmt.Sprintf("replica %d", i), got, stored)
	}
	last := map[int]int{}
	for _, c := range stored {
		var w, i int
		fmt.Sscanf(c.Reservation.ID, "w%d-%d", &w, &i)
		if prev, ok := last[w]; ok && i != prev+1 {
			t.Fatalf("writer %d's change %d follows its change %d", w, i, prev)
		}
		last[w] = i
	}
	var want []*reservation.Change
	for _, c := range stored {
		if c.Reservation.ResourceID == "r1" {
			want = append(want, c)
		}
	}
	sameChanges(t, "subscriber of r1", collect(t, r1, len(want)), want)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestFakeResume: a listener resumes after its cursor, verified; a cursor that names another
// change, or a seq beyond the newest, is refused.
func TestFakeResume(t *testing.T) {
	t.Parallel()
	log := queuetest.New(nil)
	q, _ := fakeReplica(t, log, "a", queue.Options{})
	sub := subscribe(t, q, ptr(0), "")
	for i := range 10 {
		commit(log, q, fmt.Sprintf("res-%d", i), "room")
	}
	got := collect(t, sub, 10)
	sameChanges(t, "first subscription", got, log.Stored())
	if p := sub.Position(); p != got[9].Cursor() {
		t.Errorf("Position %+v, want the cursor of the last change, %+v", p, got[9].Cursor())
	}

	ctx := ctxFor(t)
	resumed, err := q.Subscribe(ctx, reservation.ChangeFilter{Resume: cursorPtr(got[3].Cursor())})
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	sameChanges(t, "resumed after seq 4", collect(t, resumed, 6), got[4:])

	forged := got[3].Cursor()
	forged.Fingerprint ^= 2
	var e *reservation.Error
	if _, err := q.Subscribe(ctx, reservation.ChangeFilter{Resume: &forged}); !errors.As(err, &e) || e.Reason != reservation.ReasonFeedDiverged {
		t.Errorf("resume at seq 4 with another change's fingerprint: %v, want FEED_DIVERGED", err)
	}
	ahead := reservation.FeedCursor{Seq: 11, Fingerprint: 3}
	if _, err := q.Subscribe(ctx, reservation.ChangeFilter{Resume: &ahead}); !errors.As(err, &e) || e.Reason != reservation.ReasonFeedDiverged {
		t.Errorf("resume beyond the newest change: %v, want FEED_DIVERGED", err)
	}
	if _, err := q.Subscribe(ctx, reservation.ChangeFilter{After: ptr(11)}); reservation.ErrorCode(err) != reservation.EOUTOFRANGE {
		t.Errorf("after_seq beyond the newest change: %v, want EOUTOFRANGE", err)
	}
}

// TestFakeDivergence: a failover loses the changes after seq 2 and stamps others at seqs 3 to
// 5: the live subscriber that received the lost ones is cut off with FEED_DIVERGED, a cursor at
// seq 2 still resumes, one at seq 5 is refused, and a fresh subscription reads the new history.
func TestFakeDivergence(t *testing.T) {
	t.Parallel()
	log := queuetest.New(nil)
	q, _ := fakeReplica(t, log, "a", queue.Options{})
	sub := subscribe(t, q, ptr(0), "")
	for i := range 5 {
		commit(log, q, fmt.Sprintf("old-%d", i), "room")
	}
	got := collect(t, sub, 5)
	log.Failover(2)
	for i := range 3 {
		commit(log, q, fmt.Sprintf("new-%d", i), "room")
	}
	_, err := sub.Next(ctxFor(t))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.EOUTOFRANGE || e.Reason != reservation.ReasonFeedDiverged {
		t.Fatalf("live subscriber after the failover: %v, want FEED_DIVERGED", err)
	}
	if n := q.Stats().Diverged; n != 1 {
		t.Errorf("Stats.Diverged %d, want 1", n)
	}
	ctx := ctxFor(t)
	if s, err := q.Subscribe(ctx, reservation.ChangeFilter{Resume: cursorPtr(got[1].Cursor())}); err != nil {
		t.Errorf("resume at seq 2, which both histories hold: %v", err)
	} else {
		s.Close()
	}
	if _, err := q.Subscribe(ctx, reservation.ChangeFilter{Resume: cursorPtr(got[4].Cursor())}); !errors.As(err, &e) || e.Reason != reservation.ReasonFeedDiverged {
		t.Errorf("resume at seq 5, which names another change now: %v, want FEED_DIVERGED", err)
	}
	waitFor(t, "the new history read", func() bool { return q.Stats().Head == 5 })
	stored := log.Stored()
	sameChanges(t, "fresh subscription", collect(t, subscribe(t, q, ptr(0), ""), 5), stored)
	if stored[2].Reservation.ID != "new-0" {
		t.Fatalf("seq 3 names %s, want new-0", stored[2].Reservation.ID)
	}
}

// TestFakeSlowSubscriber: a live subscriber that stops reading while more changes than the
// ring holds arrive is cut off with EEXHAUSTED and resumes from its cursor; one that had not
// read yet catches up from the log. The ring is 16 changes (the default is 4096) so that a
// burst of 60 exceeds it. (A subscriber blocked in Next during the burst also catches up; that
// is not asserted here, as nothing tells the test when it is blocked.)
func TestFakeSlowSubscriber(t *testing.T) {
	t.Parallel()
	log := queuetest.New(nil)
	q, _ := fakeReplica(t, log, "a", queue.Options{Buffer: 16})
	slow := subscribe(t, q, nil, "")
	idle := subscribe(t, q, nil, "")
	// Two changes read one by one: the second comes from the ring, so slow is live then, and
	// stops reading. (The first may be replayed from the log: should the leader stamp it
	// before the poller starts, the ring begins after it.)
	commit(log, q, "res-0", "room")
	head := collect(t, slow, 1)
	commit(log, q, "res-1", "room")
	head = append(head, collect(t, slow, 1)...)
	for i := 2; i <= 61; i++ {
		log.Append(reservation.Change{Op: reservation.OpCreate, Reservation: &reservation.Reservation{ID: fmt.Sprintf("res-%d", i), ResourceID: "room"}})
	}
	q.Nudge() // one burst: stamped and read together
	waitFor(t, "the burst read", func() bool { return q.Stats().Head == 62 })
	stored := log.Stored()

	sameChanges(t, "subscriber that never read", collect(t, idle, 62), stored)

	_, err := slow.Next(ctxFor(t))
	if reservation.ErrorCode(err) != reservation.EEXHAUSTED {
		t.Fatalf("slow subscriber: %v, want EEXHAUSTED", err)
	}
	if slow.After() != 2 || q.Stats().CutOff != 1 {
		t.Fatalf("slow subscriber cut off after seq %d (want 2), %d cut off (want 1)", slow.After(), q.Stats().CutOff)
	}
	rest := collect(t, subscribe(t, q, ptr(slow.After()), ""), 60)
	sameChanges(t, "slow subscriber, resumed", append(head, rest...), stored)
}

// TestStampGapHoldsStampsBack: a leader starts two stamps at least StampGap apart, however
// often it is nudged: with an hour's gap, the changes committed after the first stamp stay
// unstamped through many nudges and looks; with none, they are stamped.
func TestStampGapHoldsStampsBack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gap     time.Duration
		stamped bool // the later changes are stamped while the test looks
	}{{"hour", time.Hour, false}, {"none", -1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			log := queuetest.New(nil)
			// The production poll and stamp intervals (20ms): the looks the gap holds back.
			q, _ := fakeReplica(t, log, "a", queue.Options{StampGap: tc.gap})
			commit(log, q, "first", "room")
			for len(log.Stored()) == 0 { // the first stamp takes it: no stamp came before
				time.Sleep(time.Millisecond)
			}
			for i := range 20 {
				commit(log, q, fmt.Sprint("r", i), "room")
				time.Sleep(5 * time.Millisecond) // 100ms in all: five stamp intervals
			}
			deadline := time.Now().Add(10 * time.Second)
			for tc.stamped && len(log.Stored()) < 21 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := len(log.Stored()); (got == 21) != tc.stamped || (!tc.stamped && got != 1) {
				t.Errorf("%d of 21 changes stamped, want %v", got, map[bool]string{true: "21", false: "1 (the later ones held back by the gap)"}[tc.stamped])
			}
		})
	}
}
