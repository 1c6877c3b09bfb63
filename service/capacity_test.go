package service_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
)

// Many writers on three replicas book random windows, alone and in pairs, of one resource
// of capacity 3. Checked from the stored rows: the peak concurrency never exceeds 3, every
// acknowledged reservation is stored, and no refused window had a free place at every
// instant. (Nothing is cancelled, so the rows only grow: a window full when it was refused is
// full in the final rows too, and one never full there was refused wrongly.)
func TestCapacityAcrossReplicas(t *testing.T) {
	t.Parallel()
	lockers := concurrentLockers()
	const capacity, slots = 3, 160 // half-hour slots from base
	for name, newLocker := range lockers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			prefix := locktest.Prefix(t, locktest.Client(t))
			var replicas []*replica
			for range 3 {
				pool, err := repo.Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pool.Close() })
				replicas = append(replicas, startReplica(t, pool, newLocker(t, prefix)))
			}
			if _, err := replicas[0].client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: "garage", Capacity: capacity}}); err != nil {
				t.Fatal(err)
			}

			const writers, ops = 32, 20
			var mu sync.Mutex
			acked := map[string]bool{}
			var refused [][2]int // windows, in slots, of single Reserves refused for a conflict
			codesSeen := map[codes.Code]int{}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 11))
					c := replicas[w%len(replicas)].client
					pick := func() (int, int, *pb.Reservation) {
						from := rng.IntN(slots - 1)
						to := min(from+1+rng.IntN(6), slots)
						return from, to, booking("garage", float64(from)/2, float64(to)/2)
					}
					for range ops {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						var ids []string
						var err error
						from, to, r := pick()
						if rng.IntN(5) == 0 { // a pair, counted together
							_, _, r2 := pick()
							var resp *pb.ReserveBatchResponse
							if resp, err = c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{r, r2}}); err == nil {
								for _, x := range resp.GetReservations() {
									ids = append(ids, x.GetId())
								}
							}
							from = -1
						} else {
							var resp *pb.ReserveResponse
							if resp, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: r}); err == nil {
								ids = append(ids, resp.GetReservation().GetId())
							}
						}
						cancel()
						mu.Lock()
						codesSeen[status.Code(err)]++
						for _, id := range ids {
							acked[id] = true
						}
						if status.Code(err) == codes.FailedPrecondition && from >= 0 {
							refused = append(refused, [2]int{from, to})
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()

			t.Logf("outcomes by code: %v", codesSeen)
			for code, n := range codesSeen {
				if code != codes.OK && code != codes.FailedPrecondition {
					t.Errorf("%d calls failed with %v", n, code)
				}
			}
			if codesSeen[codes.OK] == 0 || codesSeen[codes.FailedPrecondition] == 0 {
				t.Errorf("outcomes %v: the workload should both succeed and be refused", codesSeen)
			}
			// The sweep: the peak is reached where a reservation starts.
			peak := count(t, db, `SELECT COALESCE(MAX(c), 0) FROM (
				SELECT a.id, COUNT(*) AS c FROM reservations a JOIN reservations b
				  ON b.resource_id = a.resource_id AND b.start_at <= a.start_at AND b.end_at > a.start_at
				WHERE a.resource_id = 'garage' GROUP BY a.id) per_start`)
			t.Logf("peak concurrency %d (capacity %d), %d reservations stored", peak, capacity, len(acked))
			if peak > capacity {
				t.Fatalf("peak concurrency %d exceeds the capacity %d", peak, capacity)
			}
			var stored []struct {
				ID    string    `db:"id"`
				Start time.Time `db:"start_at"`
				End   time.Time `db:"end_at"`
			}
			if err := db.Select(&stored, "SELECT id, start_at, end_at FROM reservations WHERE resource_id = 'garage'"); err != nil {
				t.Fatal(err)
			}
			if len(stored) != len(acked) {
				t.Errorf("%d reservations stored, %d acknowledged", len(stored), len(acked))
			}
			used := make([]int, slots)
			for _, r := range stored {
				if !acked[r.ID] {
					t.Errorf("stored reservation %s was never acknowledged", r.ID)
				}
				for s := int(r.Start.Sub(base) / (30 * time.Minute)); s < int(r.End.Sub(base)/(30*time.Minute)); s++ {
					used[s]++
				}
			}
			for _, w := range refused {
				full := false
				for s := w[0]; s < w[1]; s++ {
					full = full || used[s] >= capacity
				}
				if !full {
					t.Errorf("a Reserve of slots %d-%d was refused, but it never holds %d at once: %v", w[0], w[1], capacity, used[w[0]:w[1]])
				}
			}
			var fromCache int64
			for _, r := range replicas {
				fromCache += r.taken.Stats().Refused
			}
			t.Logf("%d refusals checked, %d overlaps proposed by the replicas' caches", len(refused), fromCache)
		})
	}
}
