package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"reservation"
	"reservation/lock"
	"reservation/repo"
	"reservation/repo/repotest"
)

// weekly is a series of n weekly occurrences of resource (or pool) from base+fromH to toH.
func weekly(resource string, fromH, toH, n int) reservation.Series {
	return reservation.Series{First: window(resource, fromH, toH), Rule: fmt.Sprintf("FREQ=WEEKLY;COUNT=%d", n), TimeZone: "UTC"}
}

func week(i, h int) time.Time { return base.AddDate(0, 0, 7*i).Add(time.Duration(h) * time.Hour) }

func TestSeriesAllOrNothingWritesNothingOnAConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	in, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "room", Start: week(3, 9), End: week(3, 11)}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ReserveSeries(ctx, weekly("room", 10, 11, 6))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.ECONFLICT || len(e.Conflicts) != 1 || e.Conflicts[0].Index != 3 || e.Conflicts[0].Existing.ID != in[0].ID {
		t.Fatalf("series over a taken week: %v, want ECONFLICT of occurrence 3 with %s", err, in[0].ID)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Errorf("%d reservations stored, want 1: the series wrote nothing", n)
	}
	// Without the conflict, every occurrence is written, in one series.
	out, err := s.ReserveSeries(ctx, weekly("room", 12, 13, 6))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 6 || out.ID == "" || len(out.Skipped) != 0 {
		t.Fatalf("outcome %+v", out)
	}
	for i, r := range out.Reservations {
		if r.SeriesID != out.ID || !r.Start.Equal(week(i, 12)) || !r.End.Equal(week(i, 13)) {
			t.Errorf("occurrence %d: %+v", i, r)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE series_id = '"+out.ID+"'"); n != 6 {
		t.Errorf("%d stored with the series id, want 6", n)
	}
}

func TestSeriesSkipConflictsWritesTheRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	a, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "room", Start: week(1, 9), End: week(1, 11)}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "room", Start: week(4, 10), End: week(4, 12)}))
	if err != nil {
		t.Fatal(err)
	}
	series := weekly("room", 10, 11, 6)
	series.Mode = reservation.SeriesSkipConflicts
	out, err := s.ReserveSeries(ctx, series)
	if err != nil {
		t.Fatal(err)
	}
	var starts []time.Time
	for _, r := range out.Reservations {
		starts = append(starts, r.Start)
	}
	if want := []time.Time{week(0, 10), week(2, 10), week(3, 10), week(5, 10)}; !slices.EqualFunc(starts, want, time.Time.Equal) {
		t.Errorf("made %v, want %v", starts, want)
	}
	want := []reservation.SkippedOccurrence{
		{Start: week(1, 10), End: week(1, 11), Conflicting: []string{a[0].ID}, Reason: repo.SkipConflict},
		{Start: week(4, 10), End: week(4, 11), Conflicting: []string{b[0].ID}, Reason: repo.SkipConflict},
	}
	if fmt.Sprint(out.Skipped) != fmt.Sprint(want) {
		t.Errorf("skipped %v, want %v", out.Skipped, want)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE series_id = '"+out.ID+"'"); n != 4 {
		t.Errorf("%d stored in the series, want 4", n)
	}
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Errorf("%d overlaps", n)
	}
}

// TestSeriesSkipConflictsRounds: more conflicts than one refusal names (MaxConflicts 2), a
// disabled resource, and occurrences of one series in each other's way.
func TestSeriesSkipConflictsRounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{MaxConflicts: 2}) // a refusal names 2: the rounds find the rest
	var blockers []string
	for _, i := range []int{0, 2, 3, 5, 7} {
		// Holds: the read before the rounds leaves them to the rounds, which this test is about.
		r, err := s.Reserve(ctx, reservation.Booking{Hold: time.Hour, Reservations: []*reservation.Reservation{{UserID: "v", ResourceID: "room", Start: week(i, 10), End: week(i, 11)}}})
		if err != nil {
			t.Fatal(err)
		}
		blockers = append(blockers, r[0].ID)
	}
	series := weekly("room", 10, 11, 8)
	series.Mode = reservation.SeriesSkipConflicts
	out, err := s.ReserveSeries(ctx, series)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 3 || len(out.Skipped) != 5 {
		t.Fatalf("made %d, skipped %d, want 3 and 5", len(out.Reservations), len(out.Skipped))
	}
	for k, sk := range out.Skipped {
		if len(sk.Conflicting) != 1 || sk.Conflicting[0] != blockers[k] {
			t.Errorf("skipped %d: %+v, want in the way of %s", k, sk, blockers[k])
		}
	}

	// A disabled resource: every occurrence is skipped, and the outcome says so.
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "shut", Disabled: true}, 0); err != nil {
		t.Fatal(err)
	}
	shut := weekly("shut", 10, 11, 4)
	shut.Mode = reservation.SeriesSkipConflicts
	out, err = s.ReserveSeries(ctx, shut)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 0 || len(out.Skipped) != 4 || out.Skipped[0].Reason != reservation.ReasonResourceDisabled {
		t.Errorf("series of a disabled resource: %+v", out)
	}

	// Daily occurrences of 36 hours overlap each other: every other one is made, and the
	// skipped ones name the occurrence in their way.
	daily := reservation.Series{First: window("long", 0, 36), Rule: "FREQ=DAILY;COUNT=4", Mode: reservation.SeriesSkipConflicts, RequestID: "daily"}
	out, err = s.ReserveSeries(ctx, daily)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 2 || len(out.Skipped) != 2 || out.Skipped[0].Reason != repo.SkipOccurrence ||
		!slices.Equal(out.Skipped[0].Conflicting, []string{out.Reservations[0].ID}) {
		t.Errorf("overlapping occurrences: made %v, skipped %+v", out.Reservations, out.Skipped)
	}
	// Its retry gets the same outcome, the skipped occurrences naming the same ids.
	again, err := s.ReserveSeries(ctx, daily)
	if err != nil || again.ID != out.ID || fmt.Sprint(again.Skipped) != fmt.Sprint(out.Skipped) {
		t.Errorf("retry: %+v, %v; want %+v", again, err, out)
	}
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Errorf("%d overlaps", n)
	}
}

func TestSeriesRequestIDRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	if _, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "room", Start: week(2, 10), End: week(2, 11)})); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []reservation.SeriesMode{reservation.SeriesAllOrNothing, reservation.SeriesSkipConflicts} {
		series := weekly("room", 10, 11, 4)
		if mode == reservation.SeriesAllOrNothing {
			series = weekly("room", 12, 13, 4)
		}
		series.Mode, series.RequestID = mode, fmt.Sprintf("req-%d", mode)
		// Concurrent retries of one call: one outcome, written once.
		const n = 6
		outs := make([]*reservation.SeriesOutcome, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { outs[i], errs[i] = s.ReserveSeries(ctx, series) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("mode %d, call %d: %v", mode, i, errs[i])
			}
			if outs[i].ID != outs[0].ID || fmt.Sprint(outs[i].Skipped) != fmt.Sprint(outs[0].Skipped) || len(outs[i].Reservations) != len(outs[0].Reservations) ||
				outs[i].Reservations[0].ID != outs[0].Reservations[0].ID {
				t.Errorf("mode %d: call %d got %+v, call 0 %+v", mode, i, outs[i], outs[0])
			}
		}
		if mode == reservation.SeriesSkipConflicts && len(outs[0].Skipped) != 1 {
			t.Errorf("skipped %+v, want week 2", outs[0].Skipped)
		}
		// A later retry too.
		again, err := s.ReserveSeries(ctx, series)
		if err != nil || again.ID != outs[0].ID || len(again.Reservations) != len(outs[0].Reservations) {
			t.Errorf("mode %d: later retry %+v, %v; want series %s", mode, again, err, outs[0].ID)
		}
		if got := count(t, db, "SELECT COUNT(*) FROM reservations WHERE series_id = '"+outs[0].ID+"'"); got != len(outs[0].Reservations) {
			t.Errorf("mode %d: %d stored, want %d", mode, got, len(outs[0].Reservations))
		}
		if got := count(t, db, "SELECT COUNT(DISTINCT series_id) FROM reservations WHERE series_id <> ''"); got != int(mode) {
			t.Errorf("mode %d: %d series stored, want %d", mode, got, mode)
		}
		// The same request id with other parameters is refused.
		other := series
		other.Rule = "FREQ=WEEKLY;COUNT=3"
		if _, err := s.ReserveSeries(ctx, other); reservation.ErrorCode(err) != reservation.EINVALID {
			t.Errorf("mode %d: request id reused with another rule: %v, want EINVALID", mode, err)
		}
	}
	// An ALL_OR_NOTHING series refused keeps its conflict for its retries.
	refusedSeries := weekly("room", 10, 11, 4)
	refusedSeries.RequestID = "req-refused"
	_, err1 := s.ReserveSeries(ctx, refusedSeries)
	_, err2 := s.ReserveSeries(ctx, refusedSeries)
	if reservation.ErrorCode(err1) != reservation.ECONFLICT || reservation.ErrorCode(err2) != reservation.ECONFLICT {
		t.Errorf("refused series and its retry: %v, %v; want ECONFLICT twice", err1, err2)
	}
}

// TestSeriesOnAPool: each occurrence gets a unit; where the first unit is busy, another.
func TestSeriesOnAPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	for _, id := range []string{"bay-1", "bay-2"} {
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, PoolID: "bays"}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "bay-1", Start: week(1, 9), End: week(1, 18)})); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "v", ResourceID: "bay-1", Start: week(3, 9), End: week(3, 18)}, &reservation.Reservation{UserID: "v", ResourceID: "bay-2", Start: week(3, 9), End: week(3, 18)})); err != nil {
		t.Fatal(err)
	}
	series := weekly("", 10, 11, 4)
	series.First.PoolID = "bays"
	if _, err := s.ReserveSeries(ctx, series); reservation.ErrorCode(err) != reservation.ESTATE {
		t.Errorf("all or nothing over a full week: %v, want POOL_FULL", err)
	}
	series.Mode = reservation.SeriesSkipConflicts
	out, err := s.ReserveSeries(ctx, series)
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, r := range out.Reservations {
		units = append(units, r.ResourceID)
		if r.PoolID != "bays" || r.SeriesID != out.ID {
			t.Errorf("occurrence %+v", r)
		}
	}
	if !slices.Equal(units, []string{"bay-1", "bay-2", "bay-1"}) {
		t.Errorf("units %v, want bay-1, bay-2 (bay-1 busy), bay-1", units)
	}
	if len(out.Skipped) != 1 || !out.Skipped[0].Start.Equal(week(3, 10)) || out.Skipped[0].Reason != reservation.ReasonPoolFull {
		t.Errorf("skipped %+v, want week 3, POOL_FULL", out.Skipped)
	}
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Errorf("%d overlaps", n)
	}
}

func TestCancelSeriesThisAndFollowing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	series := weekly("room", 10, 11, 5)
	series.First.UserID = "ann"
	out, err := s.ReserveSeries(ctx, series)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelSeries(ctx, out.ID, time.Time{}, reservation.Ref{Owner: "bob"}); reservation.ErrorCode(err) != reservation.ENOTFOUND {
		t.Errorf("another user's series: %v, want ENOTFOUND", err)
	}
	gone, err := s.CancelSeries(ctx, out.ID, out.Reservations[2].Start, reservation.Ref{Owner: "ann", Reason: "moving out"})
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 3 || gone[0].ID != out.Reservations[2].ID || gone[2].ID != out.Reservations[4].ID {
		t.Errorf("cancelled %v, want occurrences 2 to 4", gone)
	}
	var left []string
	if err := db.Select(&left, "SELECT id FROM reservations WHERE series_id = ? ORDER BY start_at", out.ID); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{out.Reservations[0].ID, out.Reservations[1].ID}) {
		t.Errorf("left %v, want the first two", left)
	}
	if n := count(t, db, fmt.Sprintf("SELECT COUNT(*) FROM reservation_changes WHERE op = %d", reservation.OpDelete)); n != 3 {
		t.Errorf("%d deletes in the feed, want 3", n)
	}
	if _, err := s.CancelSeries(ctx, out.ID, out.Reservations[2].Start, reservation.Ref{}); reservation.ErrorCode(err) != reservation.ENOTFOUND {
		t.Errorf("again: %v, want ENOTFOUND", err)
	}
	rest, err := s.CancelSeries(ctx, out.ID, time.Time{}, reservation.Ref{})
	if err != nil || len(rest) != 2 {
		t.Errorf("the rest: %v, %v", rest, err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Errorf("%d left", n)
	}
}

// TestConcurrentSeriesNeverOverlap: series in both modes, on shared resources, from many
// goroutines over three Stores (replicas) sharing a Locker: no two reservations overlap.
func TestConcurrentSeriesNeverOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	locker := lock.NewLocal(0)
	stores := []*repo.Store{repo.New(db, repo.Options{Locker: locker}), repo.New(db, repo.Options{Locker: locker, GroupCommit: 1}), repo.New(db, repo.Options{Precheck: true})}
	var wg sync.WaitGroup
	var mu sync.Mutex
	made := 0
	for g := range 12 {
		wg.Go(func() {
			for i := range 4 {
				res := []string{"a", "b"}[(g+i)%2]
				series := weekly(res, (g+i)%5, (g+i)%5+2, 8)
				series.First.UserID = fmt.Sprintf("u%d", g)
				if i%2 == 0 {
					series.Mode = reservation.SeriesSkipConflicts
				}
				out, err := stores[g%3].ReserveSeries(ctx, series)
				if err != nil && reservation.ErrorCode(err) != reservation.ECONFLICT {
					t.Errorf("series: %v", err)
					return
				}
				if err == nil {
					mu.Lock()
					made += len(out.Reservations)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Errorf("%d overlapping pairs", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != made || n == 0 {
		t.Errorf("%d stored, %d made", n, made)
	}
}

// BenchmarkReserveSeries is one series of 500 daily occurrences through the store: all or
// nothing on a free resource, and SKIP_CONFLICTS on one where every other day is taken (250
// skipped, 250 made).
func BenchmarkReserveSeries(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []reservation.SeriesMode{reservation.SeriesAllOrNothing, reservation.SeriesSkipConflicts} {
		b.Run(fmt.Sprintf("mode-%d", mode), func(b *testing.B) {
			db, _ := repotest.NewDB(b)
			s := repo.New(db, repo.Options{})
			n := 0
			for b.Loop() {
				b.StopTimer()
				n++
				res := fmt.Sprint("room-", n)
				if mode == reservation.SeriesSkipConflicts {
					var taken []*reservation.Reservation
					for i := 0; i < 500; i += 2 {
						taken = append(taken, &reservation.Reservation{UserID: "v", ResourceID: res, Start: base.AddDate(0, 0, i).Add(10 * time.Hour), End: base.AddDate(0, 0, i).Add(11 * time.Hour)})
					}
					if _, err := s.Reserve(ctx, reservation.Book(taken...)); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				out, err := s.ReserveSeries(ctx, reservation.Series{First: window(res, 10, 11), Rule: "FREQ=DAILY;COUNT=500", Mode: mode})
				if err != nil || len(out.Reservations) != 500/int(mode) {
					b.Fatalf("%v, %v", out, err)
				}
			}
		})
	}
}
