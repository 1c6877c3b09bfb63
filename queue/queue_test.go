package queue_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/queue"
	"reservation/repo"
	"reservation/repo/repotest"
)

var quiet = slog.New(slog.DiscardHandler)

// replica is one service instance's store and queue on a shared database.
type replica struct {
	store *repo.Store
	queue *queue.Queue
	stop  func() // stops the queue and waits for it
}

func startReplica(t *testing.T, db *sqlx.DB, opts queue.Options) *replica {
	t.Helper()
	opts.Logger = quiet
	if opts.PollInterval == 0 {
		opts.PollInterval = 5 * time.Millisecond
		opts.StampInterval = 5 * time.Millisecond
	}
	q := queue.New(repo.NewChanges(db), repo.NewLeader(db), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	store := repo.New(db, repo.Options{Logger: quiet, Committed: q.Nudge})
	return &replica{store: store, queue: q, stop: stop}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var base = time.Date(2031, 1, 6, 8, 0, 0, 0, time.UTC)

// book reserves hour i of resource.
func book(t *testing.T, r *replica, resource string, i int) *reservation.Reservation {
	t.Helper()
	start := base.Add(time.Duration(i) * time.Hour)
	out, err := r.store.Reserve(ctxFor(t), reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: resource, Start: start, End: start.Add(time.Hour)}))
	if err != nil {
		t.Fatalf("reserve %s hour %d: %v", resource, i, err)
	}
	return out[0]
}

func subscribe(t *testing.T, q *queue.Queue, after *uint64, resource string) reservation.Subscription {
	t.Helper()
	sub, err := q.Subscribe(ctxFor(t), reservation.ChangeFilter{ResourceID: resource, After: after})
	if err != nil {
		t.Fatalf("subscribe after %v: %v", after, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// collect reads from sub until it has n changes, failing the test after a while.
func collect(t *testing.T, sub reservation.Subscription, n int) []*reservation.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*reservation.Change
	for len(out) < n {
		cs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d changes: %v", len(out), n, err)
		}
		out = append(out, cs...)
	}
	if len(out) > n {
		t.Fatalf("got %d changes, want %d", len(out), n)
	}
	return out
}

// stored is one sequenced row of reservation_changes.
type stored struct {
	Seq           uint64 `db:"seq"`
	ReservationID string `db:"reservation_id"`
	Op            int    `db:"op"`
	Version       int64  `db:"resource_version"`
}

func storedChanges(t *testing.T, db *sqlx.DB) []stored {
	t.Helper()
	var out []stored
	if err := db.Select(&out, "SELECT seq, reservation_id, op, resource_version FROM reservation_changes WHERE seq IS NOT NULL ORDER BY seq"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(out); i++ {
		if out[i].Seq != out[i-1].Seq+1 {
			t.Fatalf("stored seqs have a gap: %d follows %d", out[i].Seq, out[i-1].Seq)
		}
	}
	return out
}

// same fails the test unless got is exactly want, in order.
func same(t *testing.T, name string, got []*reservation.Change, want []stored) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d changes, want %d", name, len(got), len(want))
	}
	for i, c := range got {
		w := want[i]
		if c.Seq != w.Seq || c.Reservation.ID != w.ReservationID || int(c.Op) != w.Op {
			t.Fatalf("%s: change %d is seq %d %s %s, want seq %d %v %s", name, i, c.Seq, c.Op, c.Reservation.ID, w.Seq, reservation.Op(w.Op), w.ReservationID)
		}
	}
}

func ptr(v uint64) *uint64 { return &v }

func TestChangesCarryTheRowAsOfTheChange(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{})
	sub := subscribe(t, r.queue, nil, "")
	if sub.After() != 0 {
		t.Fatalf("new feed starts after %d, want 0", sub.After())
	}
	ctx := ctxFor(t)
	made := book(t, r, "room", 0)
	confirmed, err := r.store.Confirm(ctx, reservation.Ref{ID: made.ID})
	if err != nil {
		t.Fatal(err)
	}
	noted, err := r.store.Update(ctx, reservation.Ref{ID: made.ID}, reservation.SetNote("late check-in"))
	if err != nil {
		t.Fatal(err)
	}
	removed, err := r.store.Cancel(ctx, reservation.Ref{ID: made.ID})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, sub, 4)
	want := []struct {
		op reservation.Op
		r  *reservation.Reservation
	}{{reservation.OpCreate, made}, {reservation.OpUpdate, confirmed}, {reservation.OpUpdate, noted}, {reservation.OpDelete, removed}}
	for i, w := range want {
		c := got[i]
		if c.Seq != uint64(i+1) || c.Op != w.op || *c.Reservation != *w.r {
			t.Errorf("change %d: seq %d %s %+v, want seq %d %s %+v", i, c.Seq, c.Op, *c.Reservation, i+1, w.op, *w.r)
		}
		if c.CommittedAt.IsZero() || (i > 0 && c.CommittedAt.Before(got[i-1].CommittedAt)) {
			t.Errorf("change %d committed at %v, after %v", i, c.CommittedAt, got[max(i-1, 0)].CommittedAt)
		}
	}
	if removed.Version != 4 || removed.Status != reservation.StatusConfirmed || removed.Note != "late check-in" {
		t.Errorf("cancel returned %+v, want version 4, CONFIRMED, with its note", *removed)
	}
}

// TestHeldTransactionAndRollbackHole reproduces the trap of AUTO_INCREMENT ids: a writer
// that inserted its change first commits last, and a rolled-back writer leaves a hole in the
// ids. The feed must deliver every committed change once, in commit order.
func TestHeldTransactionAndRollbackHole(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{})
	live := subscribe(t, r.queue, nil, "")
	ctx := ctxFor(t)

	// A writer that takes its id first and holds its transaction open.
	held := heldWrite(t, db, "slow-room")
	// A writer that takes an id and rolls back: a permanent hole.
	hole := heldWrite(t, db, "abandoned-room")
	if err := hole.Rollback(); err != nil {
		t.Fatal(err)
	}
	var later []*reservation.Reservation
	for i := range 3 {
		later = append(later, book(t, r, "fast-room", i))
	}
	first := collect(t, live, 3)
	for i, c := range first {
		if c.Reservation.ID != later[i].ID {
			t.Fatalf("change %d is %s, want %s", i, c.Reservation.ID, later[i].ID)
		}
	}
	if err := held.Commit(); err != nil {
		t.Fatal(err)
	}
	last := collect(t, live, 1)
	if last[0].Reservation.ResourceID != "slow-room" || last[0].Seq != 4 {
		t.Fatalf("held change arrived as seq %d of %s, want seq 4 of slow-room", last[0].Seq, last[0].Reservation.ResourceID)
	}
	book(t, r, "fast-room", 3)
	all := append(append(first, last...), collect(t, live, 1)...)
	want := storedChanges(t, db)
	same(t, "live subscriber", all, want)
	var ids []int64
	if err := db.SelectContext(ctx, &ids, "SELECT id FROM reservation_changes ORDER BY seq"); err != nil {
		t.Fatal(err)
	}
	if !(ids[3] < ids[0]) {
		t.Fatalf("ids in seq order %v: the held change should have the smallest id yet come 4th", ids)
	}
	// A subscriber replaying from the start sees the same.
	same(t, "replay", collect(t, subscribe(t, r.queue, ptr(0), ""), len(want)), want)
}

// heldWrite starts a transaction that writes a reservation and its change, as a writer does,
// and leaves it open.
func heldWrite(t *testing.T, db *sqlx.DB, resource string) *sqlx.Tx {
	t.Helper()
	ctx := ctxFor(t)
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback() })
	id := fmt.Sprintf("00000000-0000-7000-8000-%012d", rand.IntN(1e12))
	now := time.Now().UTC()
	_, err = tx.ExecContext(ctx, `INSERT INTO reservations (id, user_id, resource_id, status, start_at, end_at, note, created_at, updated_at, version)
		VALUES (?, 'u', ?, 1, ?, ?, '', ?, ?, 1)`, id, resource, base, base.Add(time.Hour), now, now)
	if err != nil {
		t.Fatal(err)
	}
	snap := fmt.Sprintf(`{"id":%q,"user_id":"u","resource_id":%q,"status":1,"start":%q,"end":%q,"note":"","created_at":%q,"updated_at":%q,"version":1}`,
		id, resource, base.Format(time.RFC3339), base.Add(time.Hour).Format(time.RFC3339), now.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano))
	_, err = tx.ExecContext(ctx, `INSERT INTO reservation_changes (op, reservation_id, resource_id, resource_version, snapshot, created_at)
		VALUES (1, ?, ?, 1, ?, ?)`, id, resource, snap, now)
	if err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestReplicasSeeOneSequence runs writers on three replicas and a subscriber on each: every
// subscriber sees exactly the stored sequence.
func TestReplicasSeeOneSequence(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	replicas := []*replica{startReplica(t, db, queue.Options{}), startReplica(t, db, queue.Options{}), startReplica(t, db, queue.Options{})}
	subs := make([]reservation.Subscription, len(replicas))
	for i, r := range replicas {
		subs[i] = subscribe(t, r.queue, nil, "")
	}
	var wg sync.WaitGroup
	for w := range 12 {
		r := replicas[w%len(replicas)]
		wg.Go(func() {
			ctx := ctxFor(t)
			for i := range 15 {
				start := base.Add(time.Duration(rand.IntN(48)) * time.Hour)
				res := fmt.Sprintf("room-%d", rand.IntN(4))
				out, err := r.store.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: res, Start: start, End: start.Add(time.Hour)}))
				if reservation.ErrorCode(err) == reservation.ECONFLICT {
					continue
				}
				if err != nil {
					t.Errorf("reserve: %v", err)
					return
				}
				switch i % 3 {
				case 1:
					_, err = r.store.Confirm(ctx, reservation.Ref{ID: out[0].ID})
				case 2:
					_, err = r.store.Cancel(ctx, reservation.Ref{ID: out[0].ID})
				}
				if err != nil {
					t.Errorf("change %s: %v", out[0].ID, err)
				}
			}
		})
	}
	wg.Wait()
	var total int
	if err := db.Get(&total, "SELECT COUNT(*) FROM reservation_changes"); err != nil {
		t.Fatal(err)
	}
	got := make([][]*reservation.Change, len(subs))
	for i, sub := range subs {
		got[i] = collect(t, sub, total)
	}
	want := storedChanges(t, db)
	if len(want) != total || total < 100 {
		t.Fatalf("%d of %d changes sequenced; want all, and at least 100", len(want), total)
	}
	for i := range got {
		same(t, fmt.Sprintf("subscriber on replica %d", i), got[i], want)
	}
	leaders := 0
	for _, r := range replicas {
		if r.queue.Stats().Leading {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("%d replicas lead the feed, want 1", leaders)
	}
	// Per resource, the feed keeps the order of the writes: resource versions only grow.
	last := map[string]int64{}
	for _, c := range got[0] {
		if v := changeVersion(want, c.Seq); v <= last[c.Reservation.ResourceID] {
			t.Fatalf("seq %d: %s at version %d after %d", c.Seq, c.Reservation.ResourceID, v, last[c.Reservation.ResourceID])
		} else {
			last[c.Reservation.ResourceID] = v
		}
	}
}

func changeVersion(rows []stored, seq uint64) int64 {
	i := slices.IndexFunc(rows, func(s stored) bool { return s.Seq == seq })
	return rows[i].Version
}

// TestResumeAcrossLeaderFailover disconnects a subscriber mid-stream and resumes it on
// another replica after the leader's replica has stopped: the pieces join up exactly.
func TestResumeAcrossLeaderFailover(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	a := startReplica(t, db, queue.Options{})
	waitFor(t, "replica a to lead", func() bool { return a.queue.Stats().Leading })
	b := startReplica(t, db, queue.Options{})
	for i := range 20 {
		book(t, a, "room", i)
	}
	sub := subscribe(t, a.queue, ptr(0), "")
	part1 := collect(t, sub, 20)[:7] // the subscriber handles 7, then its connection drops
	sub.Close()

	a.stop()
	waitFor(t, "replica b to take over", func() bool { return b.queue.Stats().Leading })
	for i := 20; i < 30; i++ {
		book(t, b, "room", i)
	}
	resumed := subscribe(t, b.queue, ptr(part1[6].Seq), "")
	part2 := collect(t, resumed, 23)
	same(t, "resumed across failover", append(part1, part2...), storedChanges(t, db))
}

// TestSlowSubscriberIsCutOff: a live subscriber that stops reading is cut off once it is
// further behind than the buffer, while another keeps pace; it resumes and loses nothing.
func TestSlowSubscriberIsCutOff(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{Buffer: 16})
	slow := subscribe(t, r.queue, nil, "")
	fast := subscribe(t, r.queue, nil, "")
	// Two changes read one by one: the second comes from the ring, so slow is live then, and
	// stops reading. (The first may be replayed from the database: should the leader stamp it
	// before the poller starts, the ring begins after it.)
	var head, fastGot []*reservation.Change
	for i := range 2 {
		book(t, r, "room", i)
		head = append(head, collect(t, slow, 1)...)
		fastGot = append(fastGot, collect(t, fast, 1)...)
	}
	for i := 2; i < 60; i++ {
		book(t, r, "room", i)
		fastGot = append(fastGot, collect(t, fast, 1)...)
	}
	want := storedChanges(t, db)
	same(t, "fast subscriber", fastGot, want)

	_, err := slow.Next(ctxFor(t))
	if reservation.ErrorCode(err) != reservation.EEXHAUSTED {
		t.Fatalf("slow subscriber got %v, want EEXHAUSTED", err)
	}
	if slow.After() != 2 {
		t.Fatalf("slow subscriber cut off after %d, want 2", slow.After())
	}
	if n := r.queue.Stats().CutOff; n != 1 {
		t.Fatalf("%d subscribers cut off, want 1", n)
	}
	rest := collect(t, subscribe(t, r.queue, ptr(slow.After()), ""), len(want)-2)
	same(t, "slow subscriber, resumed", append(head, rest...), want)
}

// TestReplayLongerThanTheBuffer: a subscriber replaying more changes than the buffer holds
// is not cut off: it reads them from the database at its own pace.
func TestReplayLongerThanTheBuffer(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{Buffer: 8})
	batch := make([]*reservation.Reservation, 700)
	for i := range batch {
		start := base.Add(time.Duration(i) * time.Hour)
		batch[i] = &reservation.Reservation{UserID: "u", ResourceID: fmt.Sprintf("r%d", i%3), Start: start, End: start.Add(time.Hour)}
	}
	if _, err := r.store.Reserve(ctxFor(t), reservation.Book(batch...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all changes sequenced", func() bool { return r.queue.Stats().Head == 700 })
	want := storedChanges(t, db)
	same(t, "replay from 0", collect(t, subscribe(t, r.queue, ptr(0), ""), 700), want)
	same(t, "replay from 650", collect(t, subscribe(t, r.queue, ptr(650), ""), 50), want[650:])

	var r1 []stored
	for _, s := range want {
		if (s.Seq-1)%3 == 1 { // item i, seq i+1, is on resource r(i%3)
			r1 = append(r1, s)
		}
	}
	same(t, "replay of r1", collect(t, subscribe(t, r.queue, ptr(0), "r1"), len(r1)), r1)
}

// TestExpiredAndFutureCursors: pruning deletes changes past the retention from the oldest
// end, keeps the newest, and a cursor before what is kept, or after the newest, is refused.
func TestExpiredAndFutureCursors(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	writer := startReplica(t, db, queue.Options{Follow: false})
	for i := range 10 {
		book(t, writer, "room", i)
	}
	waitFor(t, "all changes sequenced", func() bool { return writer.queue.Stats().Head == 10 })
	writer.stop()
	// Changes 1 to 5 are two days old, and so is change 10 (a clock step back): 10 stays
	// behind 6 to 9, which are young, so it is kept.
	if _, err := db.Exec("UPDATE reservation_changes SET committed_at = committed_at - INTERVAL 2 DAY WHERE seq <= 5 OR seq = 10"); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, db, queue.Options{Retention: 24 * time.Hour})
	waitFor(t, "pruning", func() bool { return r.queue.Stats().Pruned == 5 })
	for _, after := range []uint64{0, 3, 11, 100} {
		_, err := r.queue.Subscribe(ctxFor(t), reservation.ChangeFilter{After: ptr(after)})
		if reservation.ErrorCode(err) != reservation.EOUTOFRANGE {
			t.Errorf("subscribe after %d: %v, want EOUTOFRANGE", after, err)
		}
	}
	want := storedChanges(t, db)
	if len(want) != 5 || want[0].Seq != 6 {
		t.Fatalf("kept %+v, want seqs 6 to 10", want)
	}
	same(t, "after 5", collect(t, subscribe(t, r.queue, ptr(5), ""), 5), want)
	same(t, "after 10", nil, nil)
	if sub := subscribe(t, r.queue, ptr(10), ""); sub.After() != 10 {
		t.Fatalf("subscription after 10 starts after %d", sub.After())
	}
}

// TestPruneKeepsTheNewest: when every change is past the retention, the newest stays, so
// seqs continue from it and a listener that saw it can resume.
func TestPruneKeepsTheNewest(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	w := startReplica(t, db, queue.Options{})
	for i := range 4 {
		book(t, w, "room", i)
	}
	waitFor(t, "all changes sequenced", func() bool { return w.queue.Stats().Head == 4 })
	w.stop()
	if _, err := db.Exec("UPDATE reservation_changes SET committed_at = committed_at - INTERVAL 30 DAY"); err != nil {
		t.Fatal(err)
	}
	r := startReplica(t, db, queue.Options{Retention: 24 * time.Hour})
	waitFor(t, "pruning", func() bool { return r.queue.Stats().Pruned == 3 })
	sub := subscribe(t, r.queue, ptr(4), "")
	book(t, r, "room", 10)
	if got := collect(t, sub, 1); got[0].Seq != 5 {
		t.Fatalf("next change has seq %d, want 5", got[0].Seq)
	}
	if _, err := r.queue.Subscribe(ctxFor(t), reservation.ChangeFilter{After: ptr(2)}); reservation.ErrorCode(err) != reservation.EOUTOFRANGE {
		t.Fatalf("subscribe after a pruned seq: %v, want EOUTOFRANGE", err)
	}
}

func TestNextEndsWithItsContextAndTheQueue(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{})
	sub := subscribe(t, r.queue, nil, "")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with nothing new: %v, want deadline exceeded", err)
	}
	r.stop()
	if _, err := sub.Next(ctxFor(t)); reservation.ErrorCode(err) != reservation.EUNAVAILABLE {
		t.Fatalf("Next after the queue stopped: %v, want EUNAVAILABLE", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledFeedIsReported: when no replica can be elected to stamp (the election fails with
// an SQL error), the failures are counted, and once a change has waited longer than the
// stall bound, by the replica's clock, the feed says it is stalled; it recovers once
// elections work again.
func TestStalledFeedIsReported(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	ctx := ctxFor(t)
	var clock atomic.Int64
	clock.Store(base.UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	r := startReplica(t, db, queue.Options{Now: now})
	sub := subscribe(t, r.queue, nil, "")
	book(t, r, "room", 0)
	collect(t, sub, 1)
	r.queue.CheckHealth(ctx)
	if err := r.queue.Stalled(); err != nil {
		t.Fatalf("a feed that stamps said: %v", err)
	}

	// An election that fails with an SQL error, not for another replica leading.
	if _, err := db.ExecContext(ctx, "ALTER TABLE reservation_leases DROP COLUMN token"); err != nil {
		t.Fatal(err)
	}
	book(t, r, "room", 1)
	for r.queue.Stats().ElectionErrors == 0 {
		if ctx.Err() != nil {
			t.Fatal("no election failure counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.queue.CheckHealth(ctx)
	if err := r.queue.Stalled(); err != nil {
		t.Fatalf("stalled before the bound passed: %v", err)
	}
	clock.Add(int64(queue.DefaultStallBound + time.Second))
	h := r.queue.CheckHealth(ctx)
	if h.UnstampedAge != queue.DefaultStallBound+time.Second {
		t.Fatalf("unstamped age %s, want %s", h.UnstampedAge, queue.DefaultStallBound+time.Second)
	}
	if err := r.queue.Stalled(); err == nil {
		t.Fatal("a change waited past the bound, and the feed did not say it was stalled")
	}

	if _, err := db.ExecContext(ctx, "ALTER TABLE reservation_leases ADD COLUMN token BIGINT NOT NULL DEFAULT 0"); err != nil {
		t.Fatal(err)
	}
	collect(t, sub, 1)
	r.queue.CheckHealth(ctx) // sees nothing waiting
	r.queue.CheckHealth(ctx) // and that this replica read up to the head of the look before
	if err := r.queue.Stalled(); err != nil {
		t.Fatalf("after elections work again: %v", err)
	}
}

// The seqs a live subscriber received come to name other changes (a failover to a replica
// that had other changes at those seqs, played here by giving their rows other ids in one
// statement): the subscriber is cut off with FEED_DIVERGED instead of being given what
// follows, and a fresh subscription continues from the stored feed.
func TestLiveSubscriberCutOffWhenItsSeqsNameOtherChanges(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, queue.Options{})
	zero := uint64(0)
	sub := subscribe(t, r.queue, &zero, "")
	for i := range 3 {
		book(t, r, "room", i)
	}
	got := collect(t, sub, 3)
	if _, err := db.Exec("UPDATE reservation_changes SET id = id + 1000 WHERE seq >= 2"); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	_, err := sub.Next(ctx)
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.EOUTOFRANGE || e.Reason != reservation.ReasonFeedDiverged {
		t.Fatalf("live subscriber after its seqs changed: %v, want FEED_DIVERGED", err)
	}
	if n := r.queue.Stats().Diverged; n != 1 {
		t.Errorf("Stats.Diverged %d, want 1", n)
	}
	// Its cursor at seq 1 is still good; at seq 3 it names another change now.
	if _, err := r.queue.Subscribe(ctx, reservation.ChangeFilter{Resume: cursorPtr(got[0].Cursor())}); err != nil {
		t.Errorf("resume at seq 1, which both histories hold: %v", err)
	}
	_, err = r.queue.Subscribe(ctx, reservation.ChangeFilter{Resume: cursorPtr(got[2].Cursor())})
	if !errors.As(err, &e) || e.Reason != reservation.ReasonFeedDiverged {
		t.Errorf("resume at seq 3, which names another change now: %v, want FEED_DIVERGED", err)
	}
	book(t, r, "room", 5)
	fresh := subscribe(t, r.queue, &zero, "")
	same(t, "fresh subscription", collect(t, fresh, 4), storedChanges(t, db))
}

func cursorPtr(c reservation.FeedCursor) *reservation.FeedCursor { return &c }
