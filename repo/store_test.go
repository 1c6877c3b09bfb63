package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"reservation"
	"reservation/lock"
	"reservation/repo"
	"reservation/repo/repotest"
)

var base = time.Date(2031, 5, 4, 0, 0, 0, 0, time.UTC)

func window(resource string, fromH, toH int) *reservation.Reservation {
	return &reservation.Reservation{UserID: "u", ResourceID: resource,
		Start: base.Add(time.Duration(fromH) * time.Hour), End: base.Add(time.Duration(toH) * time.Hour)}
}

func count(t *testing.T, s interface {
	Get(any, string, ...any) error
}, query string) int {
	t.Helper()
	var n int
	if err := s.Get(&n, query); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReserveManyIsAllOrNothing(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	ctx := context.Background()
	existing, err := s.Reserve(ctx, reservation.Book(window("room", 10, 12)))
	if err != nil {
		t.Fatal(err)
	}

	// Item 1 hits the stored reservation, item 3 overlaps item 2 of the same call.
	_, err = s.Reserve(ctx, reservation.Book(window("parking", 0, 24), window("room", 11, 13), window("room", 20, 22), window("room", 21, 23)))
	var e *reservation.Error
	if reservation.ErrorCode(err) != reservation.ECONFLICT || !errors.As(err, &e) {
		t.Fatalf("got %v, want a conflict", err)
	}
	var got []string
	for _, c := range e.Conflicts {
		got = append(got, fmt.Sprintf("%d:%s", c.Index, reservation.FormatTime(c.Existing.Start)))
	}
	want := []string{"1:" + reservation.FormatTime(existing[0].Start), "3:2031-05-04T20:00:00Z"}
	if !slices.Equal(got, want) {
		t.Errorf("conflicts %v, want %v", got, want)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Errorf("%d rows after a rejected batch, want the 1 from before", n)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM resources WHERE id = 'parking'"); n != 0 {
		t.Errorf("a rejected batch left the resource row it created")
	}

	out, err := s.Reserve(ctx, reservation.Book(window("parking", 0, 24), window("room", 12, 13), window("room", 8, 10)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[2].ResourceID != "room" || !out[2].End.Equal(existing[0].Start) {
		t.Errorf("batch returned %v, want its items in the order given", out)
	}
	if n := count(t, db, "SELECT version FROM resources WHERE id = 'room'"); n != 3 {
		t.Errorf("room at version %d, want 3 (one per reservation written)", n)
	}
}

// The overlap check only scans back as far as the resource's longest reservation: a long
// reservation stored long ago must still be found.
func TestLongReservationStillConflicts(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	ctx := context.Background()
	for _, w := range []*reservation.Reservation{window("hall", 0, 1000), window("hall", 1000, 1001)} {
		if _, err := s.Reserve(ctx, reservation.Book(w)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.Reserve(ctx, reservation.Book(window("hall", 999, 1000)))
	if reservation.ErrorCode(err) != reservation.ECONFLICT {
		t.Fatalf("booking the last hour of a 1000-hour reservation: %v, want a conflict", err)
	}
	// Find bounds its range the same way.
	w := window("hall", 999, 1001)
	found, err := s.Find(ctx, reservation.Filter{ResourceID: "hall", Start: w.Start, End: w.End})
	if err != nil || len(found) != 2 || !found[0].Start.Equal(base) {
		t.Fatalf("find from hour 999: %v, %v; want the 1000-hour reservation and the next", found, err)
	}
	if found, err := s.Find(ctx, reservation.Filter{ResourceID: "yard", Start: w.Start, End: w.End}); err != nil || len(found) != 0 {
		t.Fatalf("find on a resource never used: %v, %v; want none", found, err)
	}
}

// Batches that cross the same resources in opposite orders take their locks in one order, so
// they never deadlock each other into failure.
func TestCrossingBatchesDoNotDeadlock(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 4 {
				h := (i*4 + j) * 2
				a, b := window("a", h, h+1), window("b", h, h+1)
				if i%2 == 1 {
					a, b = b, a
				}
				if _, err := s.Reserve(context.Background(), reservation.Book(a, b)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("batch failed: %v", err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 128 {
		t.Errorf("%d rows, want 128", n)
	}
}

// TestPrecheckRefusesWithoutWaiting: with Precheck, a window taken by a committed reservation
// is refused at once, even while another writer holds the resource's lock.
func TestPrecheckRefusesWithoutWaiting(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	locker := lock.NewLocal(30 * time.Second)
	s := repo.New(db, repo.Options{Locker: locker, Precheck: true})
	ctx := context.Background()
	made, err := s.Reserve(ctx, reservation.Book(window("room", 10, 12)))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := locker.Lock(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(ctx)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = s.Reserve(wctx, reservation.Book(window("room", 11, 13), window("room", 12, 14)))
	var e *reservation.Error
	if !errors.As(err, &e) || e.Code != reservation.ECONFLICT || len(e.Conflicts) != 2 || e.Conflicts[0].Existing.ID != made[0].ID || e.Conflicts[1].Index != 1 {
		t.Fatalf("got %v, want at once a conflict naming the stored reservation and the call's own first item", err)
	}
	// A free window still waits for the lock, as it must.
	qctx, qcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer qcancel()
	if _, err := s.Reserve(qctx, reservation.Book(window("room", 20, 21))); err == nil {
		t.Fatal("a free window was written while another writer held the lock")
	}
}

// TestSessionsAreReadCommitted: the store begins its transactions without naming an isolation
// level, relying on Open to make every session READ COMMITTED.
func TestSessionsAreReadCommitted(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	db.SetMaxOpenConns(3)
	for range 3 { // a fresh session each, not one reused
		conn, err := db.Connx(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var level string
		if err := conn.GetContext(t.Context(), &level, "SELECT @@SESSION.transaction_isolation"); err != nil {
			if err := conn.GetContext(t.Context(), &level, "SELECT @@SESSION.tx_isolation"); err != nil {
				t.Fatal(err)
			}
		}
		if level != "READ-COMMITTED" {
			t.Errorf("session isolation %s, want READ-COMMITTED", level)
		}
	}
}

// TestStatementsSentTogetherFailTogether: when a later statement of a write's round trip
// fails, the error reaches the caller, so the transaction is rolled back rather than
// committed with the earlier statements alone.
func TestStatementsSentTogetherFailTogether(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	ctx := t.Context()
	insert := "INSERT INTO resources (id, version, max_span_us, created_at) VALUES (?, 0, 0, ?)"
	now := time.Now().UTC()
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = repo.ExecAll(ctx, tx, insert, []any{"a", now}, insert, []any{"a", now}, insert, []any{"b", now})
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1062 {
		t.Fatalf("second statement a duplicate: got %v, want MySQL error 1062", err)
	}
	tx.Rollback()
	if n := count(t, db, "SELECT COUNT(*) FROM resources"); n != 0 {
		t.Errorf("%d resource rows after the rollback, want 0", n)
	}
	// With every statement good, all of them run.
	tx, err = db.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.ExecAll(ctx, tx, insert, []any{"a", now}, insert, []any{"b", now}, "UPDATE resources SET version = ? WHERE id = ?", []any{7, "b"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM resources WHERE version = 7"); n != 1 {
		t.Errorf("%d resources at version 7, want 1: the last statement did not run", n)
	}
}

// TestOverlapCheckMissesNoItem: the overlap check reads every item's range in one statement
// with a limit; an item that meets many stored reservations must not crowd another item's
// one conflict out of the answer (in a group, that other item is another call).
func TestOverlapCheckMissesNoItem(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	ctx := t.Context()
	for h := range 40 { // more than the statement's limit of 11 per item for 3 items
		if _, err := s.Reserve(ctx, reservation.Book(window("busy", h, h+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(ctx, reservation.Book(window("room", 5, 6))); err != nil {
		t.Fatal(err)
	}
	rs := []*reservation.Reservation{window("busy", 0, 40), window("room", 0, 10), window("yard", 0, 10)}
	found, err := s.FindInTheWay(ctx, rs)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(found[rs[0]]); n < 11 {
		t.Errorf("busy: %d found, want at least 11 (MaxConflicts+1)", n)
	}
	if n := len(found[rs[1]]); n != 1 {
		t.Errorf("room: %d found, want its one conflict", n)
	}
	if n := len(found[rs[2]]); n != 0 {
		t.Errorf("yard: %d found, want none", n)
	}
	// Under the statement's limit, every item's conflicts come from the one statement.
	few := []*reservation.Reservation{window("busy", 3, 5), window("room", 5, 7)}
	if found, err = s.FindInTheWay(ctx, few); err != nil || len(found[few[0]]) != 2 || len(found[few[1]]) != 1 {
		t.Fatalf("busy 3-5 and room 5-7: %d and %d found, %v; want 2 and 1", len(found[few[0]]), len(found[few[1]]), err)
	}
}

// TestGroupsLongerThanTheQueueAllFinish: with more concurrent calls than a group takes, the
// calls left over are written by later groups, whoever leads them; every call returns with
// its own outcome, and no two written windows overlap.
func TestGroupsLongerThanTheQueueAllFinish(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{GroupCommit: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	const calls = 48
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		// Two calls per window of each of 12 resources: one of each pair must be refused.
		wg.Go(func() {
			_, errs[i] = s.Reserve(ctx, reservation.Book(window(fmt.Sprint("room-", i%12), i%24/12, i%24/12+1)))
		})
	}
	wg.Wait()
	var ok, conflicts int
	for i, err := range errs {
		switch reservation.ErrorCode(err) {
		case "":
			ok++
		case reservation.ECONFLICT:
			conflicts++
		default:
			t.Errorf("call %d: %v", i, err)
		}
	}
	if ok != 24 || conflicts != 24 {
		t.Errorf("%d written and %d refused, want 24 and 24", ok, conflicts)
	}
	if n := repotest.Overlaps(t, db); n != 0 {
		t.Errorf("%d pairs overlap", n)
	}
}

// TestLockWaitPastDeadlineIsDeadlineExceeded: a call whose deadline passes while it waits for
// a resource's lock ends with its own context's error. The group's lock wait is cancelled when
// its last call ends, and that cancellation must not reach the caller as context.Canceled
// (CANCELLED on the wire, where DEADLINE_EXCEEDED is the truth).
func TestLockWaitPastDeadlineIsDeadlineExceeded(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	locker := lock.NewLocal(30 * time.Second) // longer than the call's deadline, so the deadline ends the wait
	s := repo.New(db, repo.Options{Locker: locker})
	ctx := context.Background()
	unlock, err := locker.Lock(ctx, "room")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(ctx)
	for i := range 5 {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		_, err = s.Reserve(wctx, reservation.Book(window("room", 10+i, 11+i)))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: got %v, want the call's own deadline exceeded", i, err)
		}
	}
}
