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
	"reservation/repo/repotest"
)

// Many writers on three replicas book random windows, alone and in pairs, of one resource
// of capacity 3, and cancel some of their own reservations. Checked from the recorded
// history: every refusal came when reservations possibly live during it filled the resource at
// an instant of its window, each reservation it names was one of them, and reservations
// certainly stored together never exceed 3. Checked from the stored rows: the peak concurrency
// never exceeds 3, and the rows are the acknowledged reservations not cancelled.
func TestCapacityAcrossReplicas(t *testing.T) {
	t.Parallel()
	lockers := concurrentLockers()
	const capacity, slots = 3, 96 // half-hour slots from base: few enough that the resource fills despite the cancels
	for name, newLocker := range lockers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			prefix := locktest.Prefix(t, locktest.Client(t))
			replicas := replicasOn(t, dsn, 3, func() reservation.Locker { return newLocker(t, prefix) })
			if _, err := replicas[0].client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: "garage", Capacity: capacity}}); err != nil {
				t.Fatal(err)
			}

			const writers, ops = 32, 20
			rec := newHistRecorder()
			var mu sync.Mutex
			codesSeen := map[string]int{} // "Reserve OK", "Cancel OK", ...
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 11))
					c := replicas[w%len(replicas)].client
					pick := func() *pb.Reservation {
						from := rng.IntN(slots - 1)
						to := min(from+1+rng.IntN(6), slots)
						return booking("garage", float64(from)/2, float64(to)/2)
					}
					var mine []string // this writer's reservations, not yet cancelled
					for range ops {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						var call histCall
						var err error
						switch {
						case len(mine) > 0 && rng.IntN(3) == 0: // cancel one of its own
							k := rng.IntN(len(mine))
							call = histCall{Op: opCancel, ID: mine[k], Invoked: rec.now()}
							mine = slices.Delete(mine, k, k+1)
							_, err = c.Cancel(ctx, &pb.CancelRequest{Id: call.ID})
							call.Returned = rec.now()
							settleCancel(&call, err)
						case rng.IntN(5) == 0: // a pair, made together or not at all
							rs := []*pb.Reservation{pick(), pick()}
							call = histCall{Op: opReserve, Items: []histItem{itemOf(rs[0]), itemOf(rs[1])}, Invoked: rec.now()}
							var resp *pb.ReserveBatchResponse
							resp, err = c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: rs})
							call.Returned = rec.now()
							settleReserve(&call, resp.GetReservations(), err)
						default:
							r := pick()
							call = histCall{Op: opReserve, Items: []histItem{itemOf(r)}, Invoked: rec.now()}
							var resp *pb.ReserveResponse
							resp, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
							call.Returned = rec.now()
							var made []*pb.Reservation
							if err == nil {
								made = append(made, resp.GetReservation())
							}
							settleReserve(&call, made, err)
						}
						cancel()
						rec.add(call)
						for _, b := range call.Booked {
							mine = append(mine, b.ID)
						}
						mu.Lock()
						codesSeen[map[histOp]string{opReserve: "Reserve ", opCancel: "Cancel "}[call.Op]+status.Code(err).String()]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()

			t.Logf("outcomes: %v", codesSeen)
			for outcome, n := range codesSeen {
				if outcome != "Reserve OK" && outcome != "Reserve FailedPrecondition" && outcome != "Cancel OK" {
					t.Errorf("%d calls ended %s", n, outcome)
				}
			}
			if codesSeen["Reserve OK"] == 0 || codesSeen["Reserve FailedPrecondition"] == 0 || codesSeen["Cancel OK"] == 0 {
				t.Errorf("outcomes %v: the workload should succeed, be refused and cancel", codesSeen)
			}
			history := rec.history()
			checked := checkHistory(inventory{Capacity: map[string]int{"garage": capacity}}, history)
			for _, p := range checked.Problems {
				t.Error(p)
			}
			t.Logf("history of %d calls: %d reservations acknowledged, %d refusals checked (%d reservations they name), %d cancels acknowledged, %d outcomes unknown",
				len(history), checked.Reserved, checked.Refused, checked.NamedChecked, checked.Cancelled, checked.Unknown)
			if checked.Refused == 0 {
				t.Error("no refusal was checked")
			}

			// The sweep: the peak is reached where a reservation starts.
			peak := count(t, db, `SELECT COALESCE(MAX(c), 0) FROM (
				SELECT a.id, COUNT(*) AS c FROM reservations a JOIN reservations b
				  ON b.resource_id = a.resource_id AND b.start_at <= a.start_at AND b.end_at > a.start_at
				WHERE a.resource_id = 'garage' GROUP BY a.id) per_start`)
			var stored []string
			if err := db.Select(&stored, "SELECT id FROM reservations WHERE resource_id = 'garage'"); err != nil {
				t.Fatal(err)
			}
			t.Logf("peak concurrency %d (capacity %d), %d reservations stored", peak, capacity, len(stored))
			if peak > capacity {
				t.Fatalf("peak concurrency %d exceeds the capacity %d", peak, capacity)
			}
			checkStored(t, history, stored)
			var fromCache int64
			for _, r := range replicas {
				fromCache += r.taken.Stats().Refused
			}
			t.Logf("%d overlaps proposed by the replicas' caches", fromCache)
		})
	}
}

// checkStored checks that the stored reservations are those of history acknowledged and not
// cancelled, when every call of history has a known outcome.
func checkStored(t *testing.T, history []histCall, stored []string) {
	t.Helper()
	want := map[string]bool{}
	for _, c := range history {
		for _, b := range c.Booked {
			want[b.ID] = true
		}
	}
	for _, c := range history {
		if c.Op == opCancel && c.Outcome == outOK {
			delete(want, c.ID)
		}
	}
	for _, id := range stored {
		if !want[id] {
			t.Errorf("stored reservation %s was never acknowledged, or was cancelled", id)
		}
		delete(want, id)
	}
	for id := range want {
		t.Errorf("reservation %s was acknowledged and not cancelled, but is not stored", id)
	}
}
