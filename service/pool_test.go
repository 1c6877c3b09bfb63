package service_test

import (
	"context"
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
	"reservation/service"
)

// 32 clients on three replicas book a pool of 5 units and its units directly, at random, and
// cancel some of their own reservations. Checked from the recorded history: every POOL_FULL
// came when reservations possibly live during it took all 5 units at an instant of its window,
// every RESERVATION_CONFLICT when they took the unit, naming them, and reservations certainly
// stored together never share a unit. Checked from the stored rows: no two reservations of a
// unit overlap, every acknowledged booking names a unit of the pool and is stored with its
// pool, and the rows are the acknowledged reservations not cancelled.
func TestPoolAcrossReplicas(t *testing.T) {
	t.Parallel()
	lockers := concurrentLockers()
	const slots = 36 // half-hour slots from base: few enough that the pool fills despite the cancels
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
			rec := newHistRecorder()
			var mu sync.Mutex
			codesSeen := map[string]int{} // "Reserve OK", "Reserve POOL_FULL", "Cancel OK", ...
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 13))
					c := replicas[w%len(replicas)].client
					var mine []string // this writer's reservations, not yet cancelled
					for range ops {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						var call histCall
						var err error
						if len(mine) > 0 && rng.IntN(3) == 0 { // cancel one of its own
							k := rng.IntN(len(mine))
							call = histCall{Op: opCancel, ID: mine[k], Invoked: rec.now()}
							mine = slices.Delete(mine, k, k+1)
							_, err = c.Cancel(ctx, &pb.CancelRequest{Id: call.ID})
							call.Returned = rec.now()
							settleCancel(&call, err)
						} else {
							from := rng.IntN(slots - 1)
							to := min(from+1+rng.IntN(4), slots)
							r := booking("", float64(from)/2, float64(to)/2)
							if rng.IntN(3) > 0 {
								r.PoolId = "level-1"
							} else {
								r.ResourceId = units[rng.IntN(len(units))]
							}
							call = histCall{Op: opReserve, Items: []histItem{itemOf(r)}, Invoked: rec.now()}
							var resp *pb.ReserveResponse
							resp, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
							call.Returned = rec.now()
							var made []*pb.Reservation
							if err == nil {
								got := resp.GetReservation()
								made = append(made, got)
								if !slices.Contains(units, got.GetResourceId()) || got.GetPoolId() != "level-1" {
									t.Errorf("booking acknowledged on %q, pool %q: not a unit of level-1", got.GetResourceId(), got.GetPoolId())
								}
							}
							settleReserve(&call, made, err)
							if call.Outcome == outPoolFull && r.GetPoolId() == "" {
								t.Errorf("POOL_FULL for a direct booking of %s", r.GetResourceId())
							}
						}
						cancel()
						rec.add(call)
						for _, b := range call.Booked {
							mine = append(mine, b.ID)
						}
						outcome := status.Code(err).String()
						if ei := conflictInfo(status.Convert(err)); ei != nil {
							outcome = ei.GetReason()
						}
						mu.Lock()
						codesSeen[map[histOp]string{opReserve: "Reserve ", opCancel: "Cancel "}[call.Op]+outcome]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()

			t.Logf("outcomes: %v", codesSeen)
			for outcome, n := range codesSeen {
				switch outcome {
				case "Reserve OK", "Reserve " + reservation.ReasonPoolFull, "Reserve " + service.ConflictReason, "Cancel OK":
				default:
					t.Errorf("%d calls ended %s", n, outcome)
				}
			}
			if codesSeen["Reserve OK"] == 0 || codesSeen["Reserve "+reservation.ReasonPoolFull] == 0 || codesSeen["Cancel OK"] == 0 {
				t.Errorf("outcomes %v: the workload should book, fill the pool and cancel", codesSeen)
			}
			history := rec.history()
			checked := checkHistory(inventory{Pools: map[string][]string{"level-1": units}}, history)
			for _, p := range checked.Problems {
				t.Error(p)
			}
			var poolFull int
			for _, c := range history {
				if c.Outcome == outPoolFull {
					poolFull++
				}
			}
			t.Logf("history of %d calls: %d reservations acknowledged, %d refusals checked (%d POOL_FULL; %d reservations named by conflicts), %d cancels acknowledged, %d outcomes unknown",
				len(history), checked.Reserved, checked.Refused, poolFull, checked.NamedChecked, checked.Cancelled, checked.Unknown)
			if poolFull == 0 {
				t.Error("no POOL_FULL was checked")
			}

			if n := overlaps(t, db); n != 0 {
				t.Fatalf("%d pairs of stored reservations overlap", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE pool_id <> 'level-1'"); n != 0 {
				t.Errorf("%d reservations stored without their pool", n)
			}
			var stored []struct {
				ID       string `db:"id"`
				Resource string `db:"resource_id"`
			}
			if err := db.Select(&stored, "SELECT id, resource_id FROM reservations"); err != nil {
				t.Fatal(err)
			}
			unitOf := map[string]string{}
			for _, c := range history {
				for _, b := range c.Booked {
					unitOf[b.ID] = b.Resource
				}
			}
			var ids []string
			for _, r := range stored {
				if unitOf[r.ID] != r.Resource {
					t.Errorf("stored reservation %s on %s was acknowledged on %q", r.ID, r.Resource, unitOf[r.ID])
				}
				ids = append(ids, r.ID)
			}
			checkStored(t, history, ids)
			t.Logf("%d reservations stored", len(stored))
		})
	}
}
