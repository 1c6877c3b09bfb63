package repo_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// sessionCounter reads one SHOW SESSION STATUS counter of db's one connection.
func sessionCounter(t *testing.T, db *sqlx.DB, name string) int64 {
	t.Helper()
	var row struct {
		Name  string `db:"Variable_name"`
		Value int64  `db:"Value"`
	}
	if err := db.Get(&row, "SHOW SESSION STATUS LIKE '"+name+"'"); err != nil {
		t.Fatal(err)
	}
	return row.Value
}

// checkStamped fails unless every change has a seq, the seqs are 1 to the number of changes,
// and they follow the ids' order: gapless, each once, in id order.
func checkStamped(t *testing.T, db *sqlx.DB) int {
	t.Helper()
	var rows []struct {
		ID  int64  `db:"id"`
		Seq *int64 `db:"seq"`
	}
	if err := db.Select(&rows, "SELECT id, seq FROM reservation_changes ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if r.Seq == nil || *r.Seq != int64(i+1) {
			t.Fatalf("change %d (number %d by id) has seq %v, want %d", r.ID, i+1, seqOf(r.Seq), i+1)
		}
	}
	return len(rows)
}

// TestStampRunsOfIds: Stamp gives gapless seqs in id order to backlogs of consecutive ids, of
// ids a step apart (as a Galera node allocates them) and of ids with random gaps (rolled back
// writes), and sends the seqs of a run of ids as one range, not id by id: stamping 1,000
// consecutive ids and 334 ids three apart costs one UPDATE and under 2 KB sent to the server
// (the id-by-id CASE sent about 30 KB). Counted on one connection's session counters.
func TestStampRunsOfIds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	if _, err := s.Reserve(ctx, reservation.Book(window("r", 0, 1))); err != nil {
		t.Fatal(err)
	}
	numbers(t, db, 1000)
	backlog(t, db, 999)
	backlog(t, db, 1000) // 2,000 changes, their ids allocated in order by the server
	// The first 1,000 by id all; of the next 1,000 every third (by rank: the ids may be a step
	// apart already, on Galera).
	var ids []int64
	if err := db.Select(&ids, "SELECT id FROM reservation_changes ORDER BY id"); err != nil || len(ids) != 2000 {
		t.Fatalf("%d changes, %v", len(ids), err)
	}
	var dropped []any
	for i := 1000; i < 2000; i++ {
		if (i-1000)%3 != 0 {
			dropped = append(dropped, ids[i])
		}
	}
	deleteChanges(t, db, dropped)

	l := repo.NewLeader(db)
	defer l.Resign()
	if won, err := l.Elect(ctx, time.Second); !won || err != nil {
		t.Fatalf("elect: %v %v", won, err)
	}
	db.SetMaxOpenConns(1) // one session: its counters are the stamp's
	updates0, bytes0 := sessionCounter(t, db, "Com_update"), sessionCounter(t, db, "Bytes_received")
	n, err := l.Stamp(ctx, 10_000)
	updates, bytes := sessionCounter(t, db, "Com_update")-updates0, sessionCounter(t, db, "Bytes_received")-bytes0
	if err != nil || n != 1334 {
		t.Fatalf("stamped %d, %v; want 1,334", n, err)
	}
	t.Logf("1,334 changes: %d UPDATEs, %d bytes sent", updates, bytes)
	// The lease's fence and one stamping UPDATE; the bytes include the SHOW STATUS after.
	if updates != 2 || bytes > 2048 {
		t.Errorf("stamping runs of ids took %d UPDATEs and %d bytes, want 2 and under 2 KB", updates, bytes)
	}

	// Then 1,000 more, about half of them deleted at random (rolled back writes leave such gaps).
	db.SetMaxOpenConns(0)
	backlog(t, db, 1000)
	var fresh []int64
	if err := db.Select(&fresh, "SELECT id FROM reservation_changes WHERE seq IS NULL"); err != nil || len(fresh) != 1000 {
		t.Fatalf("%d new changes, %v", len(fresh), err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var gone []any
	for _, id := range fresh {
		if rng.IntN(2) == 0 {
			gone = append(gone, id)
		}
	}
	deleteChanges(t, db, gone)
	if n, err := l.Stamp(ctx, 10_000); err != nil || n != 1000-len(gone) {
		t.Fatalf("stamped %d, %v; want %d", n, err, 1000-len(gone))
	}
	if got := checkStamped(t, db); got != 1334+1000-len(gone) {
		t.Errorf("%d changes stored", got)
	}
}

func seqOf(p *int64) any {
	if p == nil {
		return "none"
	}
	return *p
}

func deleteChanges(t *testing.T, db *sqlx.DB, ids []any) {
	t.Helper()
	q, args, err := sqlx.In("DELETE FROM reservation_changes WHERE id IN (?)", ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}
