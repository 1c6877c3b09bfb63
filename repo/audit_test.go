package repo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// step is one change a test expects the history to hold: its op, actor and reason.
type step struct {
	op            reservation.Op
	actor, reason string
}

// wantHistory checks the history of id against want, oldest first, each change with its
// version (1, 2, ...) and the clock's time at write (at, same length as want).
func wantHistory(t *testing.T, s *repo.Store, id string, want []step, at []time.Time) {
	t.Helper()
	got, err := s.History(context.Background(), id)
	if err != nil {
		t.Fatalf("History(%s): %v", id, err)
	}
	if len(got) != len(want) {
		t.Fatalf("History(%s) has %d changes, want %d: %v", id, len(got), len(want), got)
	}
	for i, c := range got {
		w := want[i]
		if c.Op != w.op || c.Actor != w.actor || c.Reason != w.reason || c.Reservation.ID != id ||
			c.Reservation.Version != int64(i+1) || c.Seq != 0 || (at != nil && !c.CommittedAt.Equal(at[i])) {
			t.Errorf("History(%s)[%d] = %s by %q for %q, version %d, seq %d, at %s; want %s by %q for %q, version %d, seq 0, at %v",
				id, i, c.Op, c.Actor, c.Reason, c.Reservation.Version, c.Seq, c.CommittedAt, w.op, w.actor, w.reason, i+1, at)
		}
	}
}

// TestHistoryRecordsEveryChange: every way a reservation is made (group commit, alone, with a
// request id, through a pool, one statement per round trip or all together) and every change
// to it records its actor and reason, in the feed's rows and in the history, where History
// finds them oldest first; an empty actor records the reservation's user.
func TestHistoryRecordsEveryChange(t *testing.T) {
	t.Parallel()
	for _, opts := range []repo.Options{
		{},
		{GroupCommit: 1},
		{OneStatementPerTrip: true},
	} {
		t.Run(fmt.Sprintf("group commit %d, one statement per trip %v", opts.GroupCommit, opts.OneStatementPerTrip), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, _ := repotest.NewDB(t)
			clk := &clock{now: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}
			opts.Now = clk.Now
			s := repo.New(db, opts)
			if _, err := s.PutResource(ctx, &reservation.Resource{ID: "suite-1", PoolID: "suite"}, 0); err != nil {
				t.Fatal(err)
			}
			bookings := []struct {
				name  string
				b     reservation.Booking
				actor string
			}{
				{"by its user", reservation.Booking{Reservations: []*reservation.Reservation{window("room-1", 0, 1)}}, "u"},
				{"by an admin", reservation.Booking{Reservations: []*reservation.Reservation{window("room-2", 0, 1)}, Actor: "admin"}, "admin"},
				{"with a request id", reservation.Booking{Reservations: []*reservation.Reservation{window("room-3", 0, 1)}, RequestID: "r-1", Actor: "desk"}, "desk"},
				{"through a pool", reservation.Booking{Reservations: []*reservation.Reservation{poolBooking("suite", 0, 1)}, Actor: "agent"}, "agent"},
			}
			for _, bk := range bookings {
				t0 := clk.Now()
				made, err := s.Reserve(ctx, bk.b)
				if err != nil {
					t.Fatalf("%s: %v", bk.name, err)
				}
				id := made[0].ID
				clk.Set(t0.Add(time.Minute))
				if _, err := s.Update(ctx, reservation.Ref{ID: id, Reason: "late check-in"}, reservation.SetNote("arrives at 23:00")); err != nil {
					t.Fatal(err)
				}
				clk.Set(t0.Add(2 * time.Minute))
				if _, err := s.Confirm(ctx, reservation.Ref{ID: id, Actor: "front-desk", Reason: "paid"}); err != nil {
					t.Fatal(err)
				}
				clk.Set(t0.Add(3 * time.Minute))
				if _, err := s.Cancel(ctx, reservation.Ref{ID: id, Actor: "front-desk", Reason: "guest called"}); err != nil {
					t.Fatal(err)
				}
				clk.Set(t0.Add(time.Hour))
				wantHistory(t, s, id, []step{
					{reservation.OpCreate, bk.actor, ""},
					{reservation.OpUpdate, "u", "late check-in"},
					{reservation.OpUpdate, "front-desk", "paid"},
					{reservation.OpDelete, "front-desk", "guest called"},
				}, []time.Time{t0, t0.Add(time.Minute), t0.Add(2 * time.Minute), t0.Add(3 * time.Minute)})
				// The feed's rows carry the same.
				var n int
				if err := db.Get(&n, "SELECT COUNT(*) FROM reservation_changes WHERE reservation_id = ? AND (actor = ? AND op = 1 OR actor = 'front-desk' AND reason = 'guest called' AND op = 3)", id, bk.actor); err != nil || n != 2 {
					t.Errorf("%s: %d of the create and the cancel in reservation_changes with their actor and reason (%v), want 2", bk.name, n, err)
				}
			}
			if _, err := s.History(ctx, "0190a3c4-0000-7000-8000-000000000000"); reservation.ErrorCode(err) != reservation.ENOTFOUND {
				t.Errorf("History of an id never used: %v, want ENOTFOUND", err)
			}
		})
	}
}

// TestHistoryRecordsLapsedHold: the reaper removes a lapsed hold as reservation.ActorSystem
// for reservation.LapsedHold.
func TestHistoryRecordsLapsedHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, clk := clockedStore(t)
	t0 := clk.Now()
	held, err := s.Reserve(ctx, reservation.Booking{Reservations: []*reservation.Reservation{window("room", 0, 2)}, Hold: 10 * time.Minute, Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(10 * time.Minute))
	if n, err := s.Reap(ctx); err != nil || n != 1 {
		t.Fatalf("Reap at the expiry: %d, %v; want 1 hold removed", n, err)
	}
	wantHistory(t, s, held[0].ID, []step{
		{reservation.OpCreate, "alice", ""},
		{reservation.OpDelete, reservation.ActorSystem, reservation.LapsedHold},
	}, []time.Time{t0, t0.Add(10 * time.Minute)})
}

// TestHistoryPrunedAfterItsRetention: the reaper deletes the history's changes older than
// Options.HistoryRetention (400 days by default), and no other, in bounded statements: a
// backlog larger than one Reap deletes is worked off by the next.
func TestHistoryPrunedAfterItsRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, s, clk := clockedStore(t)
	t0 := clk.Now()
	old, err := s.Reserve(ctx, reservation.Book(window("room", 0, 1)))
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(24 * time.Hour))
	if _, err := s.Cancel(ctx, reservation.Ref{ID: old[0].ID, Reason: "plans changed"}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 10,500 changes, older still, written straight into the table.
	const backlog = 10500
	for done := 0; done < backlog; done += 1500 {
		values := strings.Repeat("(?, 1, '{}', 'u', '', ?), ", 1500)
		var args []any
		for i := range 1500 {
			args = append(args, fmt.Sprintf("00000000-0000-7000-8000-%012d", done+i), t0.Add(-time.Hour))
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO reservation_history (reservation_id, op, snapshot, actor, reason, created_at) VALUES "+values[:len(values)-2], args...); err != nil {
			t.Fatal(err)
		}
	}

	retention := reservation.DefaultHistoryRetention
	clk.Set(t0.Add(retention)) // the create is exactly as old as the retention: kept
	if _, err := s.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservation_history"); n != 2+backlog-10000 {
		t.Fatalf("after one Reap, %d rows in the history, want %d: the backlog less one Reap's 10,000", n, 2+backlog-10000)
	}
	if _, err := s.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, s, old[0].ID, []step{{reservation.OpCreate, "u", ""}, {reservation.OpDelete, "u", "plans changed"}}, nil)

	// A microsecond later the create is older than the retention; the cancel, a day younger, is not.
	clk.Set(t0.Add(retention + time.Microsecond))
	if _, err := s.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := s.History(ctx, old[0].ID)
	if err != nil || len(got) != 1 || got[0].Op != reservation.OpDelete || got[0].Reason != "plans changed" {
		t.Fatalf("History past the create's retention: %v, %v; want the cancel alone", got, err)
	}
	clk.Set(t0.Add(24*time.Hour + retention + time.Microsecond))
	if _, err := s.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.History(ctx, old[0].ID); reservation.ErrorCode(err) != reservation.ENOTFOUND {
		t.Fatalf("History past the cancel's retention: %v, want ENOTFOUND", err)
	}
}
