package repo_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// BenchmarkReserveStore is one Reserve through the store alone (no gRPC, no Redis), on
// resources that already hold 1,000 reservations each: the overlap check's index range is
// what it reads. Parallel, so that group commit has company.
func BenchmarkReserveStore(b *testing.B) {
	for _, v := range []struct {
		group    int
		precheck bool
	}{{1, false}, {64, false}, {64, true}} {
		b.Run(fmt.Sprintf("group-commit-%d/precheck-%v", v.group, v.precheck), func(b *testing.B) {
			db, _ := repotest.NewDB(b)
			s := repo.New(db, repo.Options{GroupCommit: v.group, Precheck: v.precheck})
			ctx := context.Background()
			base := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
			var batch []*reservation.Reservation
			for r := range 10 {
				for i := range 1000 {
					start := base.Add(time.Duration(i) * 2 * time.Hour)
					batch = append(batch, &reservation.Reservation{UserID: "u", ResourceID: fmt.Sprint("r", r), Start: start, End: start.Add(time.Hour)})
					if len(batch) == 500 {
						if _, err := s.Reserve(ctx, reservation.Book(batch...)); err != nil {
							b.Fatal(err)
						}
						batch = nil
					}
				}
			}
			var n int64
			var mu = make(chan struct{}, 1)
			mu <- struct{}{}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					<-mu
					n++
					i := n
					mu <- struct{}{}
					// The free hour between two stored ones, on one of the 10 resources.
					start := base.Add(time.Duration(i/10%1000)*2*time.Hour + time.Hour)
					_, err := s.Reserve(ctx, reservation.Book(&reservation.Reservation{UserID: "u", ResourceID: fmt.Sprint("r", i%10), Start: start, End: start.Add(time.Hour)}))
					if err != nil && reservation.ErrorCode(err) != reservation.ECONFLICT {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkHistoryBytesPerChange measures what one change costs the history
// (reservation_history, data and indexes): 2,500 reservations of a realistic size (a note of
// 40 bytes, a user of 12, an actor of 17), each created (in batches of 100), its note changed
// for a reason of 30 bytes, confirmed, and cancelled for a reason of 30 bytes: 10,000 changes.
// Then ANALYZE TABLE, and InnoDB's DATA_LENGTH + INDEX_LENGTH over the rows, beside the plain
// average of the columns' bytes. Run once: -benchtime 1x (docs/series.md, How the history is kept).
func BenchmarkHistoryBytesPerChange(b *testing.B) {
	for range b.N {
		db, _ := repotest.NewDB(b)
		s := repo.New(db, repo.Options{GroupCommit: 1})
		ctx := context.Background()
		start := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
		const reservations, perBatch = 2500, 100
		var ids []string
		for n := 0; n < reservations; n += perBatch {
			var batch []*reservation.Reservation
			for i := n; i < n+perBatch; i++ {
				at := start.Add(time.Duration(i) * time.Hour)
				batch = append(batch, &reservation.Reservation{UserID: fmt.Sprintf("guest-%06d", i), ResourceID: fmt.Sprintf("room-%03d", i%200),
					Start: at, End: at.Add(time.Hour), Note: fmt.Sprintf("late arrival, needs a cot, booking %05d", i)})
			}
			made, err := s.Reserve(ctx, reservation.Booking{Reservations: batch, Actor: "front-desk-agent7"})
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range made {
				ids = append(ids, r.ID)
			}
		}
		for i, id := range ids {
			ref := reservation.Ref{ID: id, Actor: "front-desk-agent7", Reason: fmt.Sprintf("guest asked at check-in #%05d", i)}
			if _, err := s.Update(ctx, ref, reservation.SetNote(fmt.Sprintf("early arrival, needs a cot, booking %05d", i))); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Confirm(ctx, reservation.Ref{ID: id, Actor: "front-desk-agent7"}); err != nil {
				b.Fatal(err)
			}
			ref.Reason = fmt.Sprintf("guest cancelled by phone #%05d", i)
			if _, err := s.Cancel(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, "ANALYZE TABLE reservation_history"); err != nil {
			b.Fatal(err)
		}
		var size struct {
			Rows, Data, Index, Payload float64
		}
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*), AVG(LENGTH(reservation_id) + 1 + LENGTH(snapshot) + LENGTH(actor) + LENGTH(reason) + 8 + 8) FROM reservation_history").Scan(&size.Rows, &size.Payload); err != nil {
			b.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "SELECT DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'reservation_history'").Scan(&size.Data, &size.Index); err != nil {
			b.Fatal(err)
		}
		if size.Rows != 4*reservations {
			b.Fatalf("%v changes in the history, want %d", size.Rows, 4*reservations)
		}
		b.ReportMetric((size.Data+size.Index)/size.Rows, "bytes/change")
		b.ReportMetric(size.Data/size.Rows, "data-bytes/change")
		b.ReportMetric(size.Index/size.Rows, "index-bytes/change")
		b.ReportMetric(size.Payload, "column-bytes/change")
	}
}
