package service_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/status"

	"reservation"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
)

// 32 clients on three replicas book a pool of 5 units and its units directly, at random.
// Checked from the stored rows: no two reservations of a unit overlap, every acknowledged
// pool booking names a unit of the pool and is stored with its pool, and every POOL_FULL
// came when all 5 units overlapped its window. (Nothing is cancelled, so the rows only grow:
// a unit taken when the pool was refused is taken in the final rows too.)
func TestPoolAcrossReplicas(t *testing.T) {
	t.Parallel()
	lockers := concurrentLockers()
	const slots = 48 // half-hour slots from base
	units := []string{"spot-1", "spot-2", "spot-3", "spot-4", "spot-5"}
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
			for _, u := range units {
				if _, err := replicas[0].client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: u, PoolId: "level-1"}}); err != nil {
					t.Fatal(err)
				}
			}

			const writers, ops = 32, 20
			var mu sync.Mutex
			acked := map[string]string{} // reservation id: unit
			var full [][2]int            // windows, in slots, refused with POOL_FULL
			codesSeen := map[string]int{}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 13))
					c := replicas[w%len(replicas)].client
					for range ops {
						from := rng.IntN(slots - 1)
						to := min(from+1+rng.IntN(4), slots)
						r := booking("", float64(from)/2, float64(to)/2)
						pooled := rng.IntN(3) > 0
						if pooled {
							r.PoolId = "level-1"
						} else {
							r.ResourceId = units[rng.IntN(len(units))]
						}
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
						cancel()
						outcome := status.Code(err).String()
						if ei := conflictInfo(status.Convert(err)); ei != nil {
							outcome = ei.GetReason()
						}
						mu.Lock()
						codesSeen[outcome]++
						switch {
						case err == nil:
							got := resp.GetReservation()
							acked[got.GetId()] = got.GetResourceId()
							if !slices.Contains(units, got.GetResourceId()) || got.GetPoolId() != "level-1" {
								t.Errorf("booking acknowledged on %q, pool %q: not a unit of level-1", got.GetResourceId(), got.GetPoolId())
							}
						case outcome == reservation.ReasonPoolFull:
							if !pooled {
								t.Errorf("POOL_FULL for a direct booking")
							}
							full = append(full, [2]int{from, to})
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()

			t.Logf("outcomes: %v", codesSeen)
			for outcome, n := range codesSeen {
				if outcome != "OK" && outcome != reservation.ReasonPoolFull && outcome != "RESERVATION_CONFLICT" {
					t.Errorf("%d calls ended %s", n, outcome)
				}
			}
			if codesSeen["OK"] == 0 || codesSeen[reservation.ReasonPoolFull] == 0 {
				t.Errorf("outcomes %v: the workload should both book and fill the pool", codesSeen)
			}
			if n := overlaps(t, db); n != 0 {
				t.Fatalf("%d pairs of stored reservations overlap", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE pool_id <> 'level-1'"); n != 0 {
				t.Errorf("%d reservations stored without their pool", n)
			}
			var stored []struct {
				ID       string    `db:"id"`
				Resource string    `db:"resource_id"`
				Start    time.Time `db:"start_at"`
				End      time.Time `db:"end_at"`
			}
			if err := db.Select(&stored, "SELECT id, resource_id, start_at, end_at FROM reservations"); err != nil {
				t.Fatal(err)
			}
			if len(stored) != len(acked) {
				t.Errorf("%d reservations stored, %d acknowledged", len(stored), len(acked))
			}
			taken := map[string][]bool{}
			for _, u := range units {
				taken[u] = make([]bool, slots)
			}
			for _, r := range stored {
				if acked[r.ID] != r.Resource {
					t.Errorf("stored reservation %s on %s was acknowledged on %q", r.ID, r.Resource, acked[r.ID])
				}
				for s := int(r.Start.Sub(base) / (30 * time.Minute)); s < int(r.End.Sub(base)/(30*time.Minute)); s++ {
					taken[r.Resource][s] = true
				}
			}
			for _, w := range full {
				for _, u := range units {
					if !slices.Contains(taken[u][w[0]:w[1]], true) {
						t.Errorf("POOL_FULL for slots %d-%d, but %s is free throughout them", w[0], w[1], u)
					}
				}
			}
			t.Logf("%d POOL_FULL checked against the stored rows; %s", len(full), fmt.Sprint(len(stored), " stored"))
		})
	}
}
