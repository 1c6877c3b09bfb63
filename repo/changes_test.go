package repo_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

func TestOneLeaderAtATime(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	other, _ := repotest.NewDB(t)
	ctx := context.Background()
	a, b, c := repo.NewLeader(db), repo.NewLeader(db), repo.NewLeader(other)
	defer a.Resign()
	defer b.Resign()
	defer c.Resign()
	if won, err := a.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("first candidate: won %v, %v", won, err)
	}
	if won, err := b.Elect(ctx, time.Second); won || err != nil {
		t.Fatalf("second candidate while the first leads: won %v, %v", won, err)
	}
	if won, err := c.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("candidate of another database: won %v, %v", won, err)
	}
	if _, err := b.Stamp(ctx, 10); err == nil {
		t.Fatal("a candidate that did not win stamped")
	}
	a.Resign()
	if won, err := b.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("second candidate after the first resigned: won %v, %v", won, err)
	}
}

// TestTwoStampersNeverRepeatOrSkip: a leader and a replica that believes it leads stamping at
// once, while writers commit, leave every change with exactly one seq, and the seqs without a
// gap; the one without the lease stamps nothing.
func TestTwoStampersNeverRepeatOrSkip(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	store := repo.New(db, repo.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stampers sync.WaitGroup
	var races atomic.Int64
	var usurped atomic.Int64
	for i := range 2 {
		l := repo.NewLeader(db)
		if i == 0 {
			if won, err := l.Elect(ctx, time.Second); !won || err != nil {
				t.Fatalf("elect: %v %v", won, err)
			}
		} else if err := l.Usurp(ctx); err != nil {
			t.Fatal(err)
		}
		defer l.Resign()
		stampers.Go(func() {
			for ctx.Err() == nil {
				n, err := l.Stamp(ctx, 7)
				if i == 1 {
					usurped.Add(int64(n))
				}
				if err != nil && ctx.Err() == nil {
					races.Add(1) // the other stamper took a row first, or this one is fenced out
					if i == 1 {
						l.Usurp(ctx) // and believe it leads again
					}
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Go(func() {
			for i := range 25 {
				if _, err := store.Reserve(ctx, reservation.Book(window(fmt.Sprintf("room-%d", w), i, i+1))); err != nil {
					t.Errorf("reserve: %v", err)
					return
				}
			}
		})
	}
	writers.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE seq IS NULL") > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	stampers.Wait()
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_changes WHERE seq IS NULL"); n != 0 {
		t.Fatalf("%d changes left without a seq", n)
	}
	t.Logf("stamps that lost a race or were fenced out: %d", races.Load())
	if n := usurped.Load(); n != 0 {
		t.Fatalf("the stamper without the lease stamped %d changes", n)
	}
	total := count(t, db, "SELECT COUNT(*) FROM reservation_changes")
	if total != 200 {
		t.Fatalf("%d changes stored, want 200", total)
	}
	if got := count(t, db, "SELECT COUNT(DISTINCT seq) FROM reservation_changes WHERE seq BETWEEN 1 AND 200"); got != total {
		t.Fatalf("seqs 1 to %d cover %d changes, want all", total, got)
	}
	// Within a resource the seqs follow the writes: its versions increase with seq.
	if n := count(t, db, `SELECT COUNT(*) FROM reservation_changes a JOIN reservation_changes b
		ON a.resource_id = b.resource_id AND a.seq < b.seq AND a.resource_version >= b.resource_version`); n != 0 {
		t.Fatalf("%d pairs of changes of one resource are sequenced against their write order", n)
	}
}

func TestReadDecodesSnapshots(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	ctx := context.Background()
	store := repo.New(db, repo.Options{})
	made, err := store.Reserve(ctx, reservation.Book(window("r", 0, 1), window("s", 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	l := repo.NewLeader(db)
	defer l.Resign()
	if won, err := l.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("elect: %v %v", won, err)
	}
	if n, err := l.Stamp(ctx, 100); n != 2 || err != nil {
		t.Fatalf("stamped %d: %v", n, err)
	}
	changes := repo.NewChanges(db)
	first, last, err := changes.Bounds(ctx)
	if first != 1 || last != 2 || err != nil {
		t.Fatalf("bounds %d..%d, %v; want 1..2", first, last, err)
	}
	got, err := changes.Read(ctx, 0, 2, "s", 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("read of s: %v, %v", got, err)
	}
	if c := got[0]; c.Seq != 2 || c.Op != reservation.OpCreate || *c.Reservation != *made[1] {
		t.Fatalf("read seq %d %s %+v, want seq 2 CREATE %+v", c.Seq, c.Op, *c.Reservation, *made[1])
	}
}

// TestLeaseTakeoverFencesTheOldLeader: a leader whose lease expired while it was away, and was
// taken over, stamps nothing more, and learns that it no longer leads.
func TestLeaseTakeoverFencesTheOldLeader(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	ctx := context.Background()
	store := repo.New(db, repo.Options{})
	// The old leader's lease is short, so that the test waits out its expiry in a fraction of
	// a second; TestOneLeaderAtATime keeps the default. The new leader's is long: with 300 ms
	// it lapsed too, on a loaded machine, before the old leader tried again, and the old one
	// rightly won ("the old leader won again").
	const ttl = 300 * time.Millisecond
	old, next := repo.NewLeaderTTL(db, ttl), repo.NewLeaderTTL(db, time.Minute)
	defer old.Resign()
	defer next.Resign()
	if won, err := old.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("elect: %v %v", won, err)
	}
	if won, err := next.Elect(ctx, 3*time.Second); !won || err != nil {
		t.Fatalf("takeover after the old lease expired: won %v, %v", won, err)
	}
	if _, err := store.Reserve(ctx, reservation.Book(window("r", 0, 1))); err != nil {
		t.Fatal(err)
	}
	if n, err := old.Stamp(ctx, 10); n != 0 || err == nil {
		t.Fatalf("the old leader stamped %d, err %v; want 0 and an error", n, err)
	}
	if won, err := old.Elect(ctx, 0); won || err != nil {
		t.Fatalf("the old leader won again while the new one leads: %v %v", won, err)
	}
	if n, err := next.Stamp(ctx, 10); n != 1 || err != nil {
		t.Fatalf("the new leader stamped %d: %v", n, err)
	}
}

// TestReadOfAResourceFindsTheMovesAwayFromIt: a resource's changes, as a listener of it
// replays them, are those recorded under it and the moves that took a reservation away from it,
// each once, in seq order, however small the pages they are read in; a move within a resource,
// or between two others, is not among them.
func TestReadOfAResourceFindsTheMovesAwayFromIt(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	ctx := context.Background()
	store := repo.New(db, repo.Options{})
	made, err := store.Reserve(ctx, reservation.Book(window("a", 0, 1), window("b", 0, 1), window("c", 0, 1))) // seqs 1-3
	if err != nil {
		t.Fatal(err)
	}
	x := made[0]
	for _, e := range []reservation.Edit{
		{ResourceID: "b", Start: base.Add(2 * time.Hour), End: base.Add(3 * time.Hour)}, // 4: a to b
		{Start: base.Add(4 * time.Hour), End: base.Add(5 * time.Hour)},                  // 5: within b
		{ResourceID: "c", Start: base.Add(6 * time.Hour), End: base.Add(7 * time.Hour)}, // 6: b to c
		{ResourceID: "a"}, // 7: c to a, the window kept
	} {
		if _, err := store.Update(ctx, reservation.Ref{ID: x.ID}, e); err != nil {
			t.Fatalf("move %+v: %v", e, err)
		}
	}
	if _, err := store.Reserve(ctx, reservation.Book(window("a", 10, 11))); err != nil { // 8
		t.Fatal(err)
	}
	l := repo.NewLeader(db)
	defer l.Resign()
	if won, err := l.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("elect: %v %v", won, err)
	}
	if n, err := l.Stamp(ctx, 100); n != 8 || err != nil {
		t.Fatalf("stamped %d: %v; want 8", n, err)
	}
	changes := repo.NewChanges(db)
	all, err := changes.Read(ctx, 0, 8, "", 100)
	if err != nil || len(all) != 8 {
		t.Fatalf("read of all: %d changes, %v; want 8", len(all), err)
	}
	for i, want := range []string{"", "", "", "a", "", "b", "c", ""} {
		if c := all[i]; c.Seq != uint64(i+1) || c.MovedFrom != want {
			t.Errorf("change seq %d moved from %q, want seq %d moved from %q", c.Seq, c.MovedFrom, i+1, want)
		}
	}
	for resource, want := range map[string][]uint64{"a": {1, 4, 7, 8}, "b": {2, 4, 5, 6}, "c": {3, 6, 7}, "d": nil} {
		for _, limit := range []int{1, 2, 3, 100} {
			var got []uint64
			for after := uint64(0); ; {
				page, err := changes.Read(ctx, after, 8, resource, limit)
				if err != nil {
					t.Fatalf("read of %s after %d: %v", resource, after, err)
				}
				if len(page) > limit {
					t.Fatalf("read of %s after %d, limit %d: %d changes", resource, after, limit, len(page))
				}
				for _, c := range page {
					got = append(got, c.Seq)
					if c.Reservation.ResourceID != resource && c.MovedFrom != resource {
						t.Errorf("read of %s: seq %d is of %s, moved from %q", resource, c.Seq, c.Reservation.ResourceID, c.MovedFrom)
					}
				}
				if len(page) < limit {
					break
				}
				after = page[len(page)-1].Seq
			}
			if !slices.Equal(got, want) {
				t.Errorf("read of %s in pages of %d: seqs %v, want %v", resource, limit, got, want)
			}
		}
	}
	// through bounds both reads.
	if got, err := changes.Read(ctx, 0, 5, "a", 100); err != nil || len(got) != 2 || got[1].Seq != 4 {
		t.Errorf("read of a through seq 5: %v, %v; want seqs 1 and 4", got, err)
	}
}
