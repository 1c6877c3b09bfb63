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
