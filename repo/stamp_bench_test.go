package repo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// stampBacklog is the backlog BenchmarkStampBacklog drains.
const stampBacklog = 100_000

// BenchmarkStampBacklog measures the sequencer's ceiling: how fast one leader stamps a backlog
// of 100,000 committed changes without a seq, in batches of limit (the queue's is
// queue.StampBatch), as the queue's leader loop does while a backlog waits (it stamps again at
// once while a batch comes back full). The changes are copies of a real one (its snapshot
// included), made by SQL before the timer starts. Each iteration drains a fresh backlog;
// changes/s is the figure, and ratios between runs of one sitting are what compare; the
// entries the server read per change stamped (its session's Handler_read counters) is a
// count the machine's noise leaves alone.
//
//	go test -run '^$' -bench StampBacklog -benchtime 3x ./repo/
func BenchmarkStampBacklog(b *testing.B) {
	for _, limit := range []int{1000, 5000, 10000} {
		b.Run(fmt.Sprint("batch-", limit), func(b *testing.B) {
			db, _ := repotest.NewDB(b)
			ctx := context.Background()
			s := repo.New(db, repo.Options{})
			if _, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: "r",
				Start: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2031, 1, 1, 1, 0, 0, 0, time.UTC),
				Note: strings.Repeat("n", 100)})); err != nil {
				b.Fatal(err)
			}
			numbers(b, db, stampBacklog)
			var stamped, stamps int
			var took time.Duration
			var read int64 // index and row entries the server read, on the stamping connection
			for range b.N {
				b.StopTimer()
				backlog(b, db, stampBacklog)
				// Elected after the backlog is made: making it takes longer than the lease lasts.
				l := repo.NewLeader(db)
				if won, err := l.Elect(ctx, time.Second); !won || err != nil {
					b.Fatalf("elect: %v %v", won, err)
				}
				db.SetMaxOpenConns(1) // one session: its counters are the stamps'
				read0 := handlerReads(b, db)
				b.StartTimer()
				start := time.Now()
				for {
					n, err := l.Stamp(ctx, limit)
					if err != nil {
						b.Fatal(err)
					}
					stamped += n
					stamps++
					if n < limit {
						break
					}
				}
				took += time.Since(start)
				b.StopTimer()
				read += handlerReads(b, db) - read0
				db.SetMaxOpenConns(0)
				l.Resign()
				b.StartTimer()
			}
			if stamped < b.N*stampBacklog {
				b.Fatalf("stamped %d, want %d", stamped, b.N*stampBacklog)
			}
			b.ReportMetric(float64(stamped)/took.Seconds(), "changes/s")
			b.ReportMetric(float64(stamps)/float64(b.N), "stamps/backlog")
			b.ReportMetric(float64(read)/float64(stamped), "reads/change")
		})
	}
}

// handlerReads is the sum of the session's Handler_read counters (a count of the index and
// row entries its statements read, which the machine's noise leaves alone).
func handlerReads(b testing.TB, db *sqlx.DB) int64 {
	b.Helper()
	var vars []struct {
		Name  string `db:"Variable_name"`
		Value int64  `db:"Value"`
	}
	if err := db.Select(&vars, "SHOW SESSION STATUS LIKE 'Handler_read%'"); err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, v := range vars {
		n += v.Value
	}
	return n
}

// numbers makes a table numbers(n) of 0 to n-1 (n at most 100,000) in db.
func numbers(b testing.TB, db *sqlx.DB, n int) {
	b.Helper()
	for _, q := range []string{
		"CREATE TABLE digits (d INT NOT NULL)",
		"INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)",
		"CREATE TABLE numbers (n INT NOT NULL PRIMARY KEY)",
		fmt.Sprintf("INSERT INTO numbers SELECT a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d FROM digits a, digits b, digits c, digits d, digits e WHERE a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d < %d", n),
	} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
}

// backlog adds n unstamped copies of the newest change, with new ids, in commit order.
func backlog(b testing.TB, db *sqlx.DB, n int) {
	b.Helper()
	const cols = "op, reservation_id, resource_id, resource_version, snapshot, actor, reason, moved_from, created_at"
	var id int64
	if err := db.Get(&id, "SELECT MAX(id) FROM reservation_changes"); err != nil {
		b.Fatal(err)
	}
	q := "INSERT INTO reservation_changes (" + cols + ") SELECT " + strings.ReplaceAll("c."+cols, ", ", ", c.") +
		" FROM reservation_changes c, numbers n WHERE c.id = ? AND n.n < ? ORDER BY n.n"
	if _, err := db.Exec(q, id, n); err != nil {
		b.Fatal(err)
	}
}
