package service_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"reservation"
	"reservation/lock"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/service/feedtest"
)

// Many writers on three replicas book random windows of a few hot resources. Whatever the
// lock does — work, be unreachable, or not exist — no two stored reservations may overlap,
// every acknowledged reservation must be stored, and a listener on each replica receives
// exactly the stored changes, in seq order.
func TestNoOverlapAcrossReplicas(t *testing.T) {
	t.Parallel()
	// Each replica has its own Redis client; prefix is the test's key space, shared by them.
	lockers := concurrentLockers()
	maps.Copy(lockers, map[string]func(t *testing.T, prefix string) reservation.Locker{
		// Locks that expire almost at once: holders run on without them.
		"redis lock expiring mid-write": func(t *testing.T, prefix string) reservation.Locker {
			return lock.NewRedis(locktest.Client(t), lock.RedisOptions{Prefix: prefix, TTL: time.Millisecond, Wait: 20 * time.Second, Logger: quiet})
		},
		"database only": func(*testing.T, string) reservation.Locker { return nil },
	})
	for name, newLocker := range lockers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			prefix := locktest.Prefix(t, locktest.Client(t))
			var replicas []*replica
			var stores []*repo.Store
			var redisLockers []*lock.Redis
			for range 3 {
				pool, err := repo.Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { pool.Close() })
				locker := newLocker(t, prefix)
				if l, ok := locker.(*lock.Redis); ok {
					redisLockers = append(redisLockers, l)
				}
				r := startReplica(t, pool, locker)
				replicas = append(replicas, r)
				stores = append(stores, r.store)
			}

			listeners := make([]*collector, len(replicas))
			for i, r := range replicas {
				listeners[i] = collect(t, r.client)
			}

			const writers, ops = 32, 25
			var calls feedtest.Calls // every call and its answer, for the listeners' feeds
			var mu sync.Mutex
			acked := map[string]bool{} // reservations acknowledged and not cancelled
			codesSeen := map[codes.Code]int{}
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(w), 7))
					c := replicas[w%len(replicas)].client
					var mine []string
					for range ops {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						if len(mine) > 0 && rng.IntN(5) == 0 {
							id := mine[0]
							mine = mine[1:]
							resp, err := c.Cancel(ctx, &pb.CancelRequest{Id: id})
							recordCall(&calls, feedtest.Delete, resp.GetReservation(), id, err)
							mu.Lock()
							codesSeen[status.Code(err)]++
							if err == nil {
								delete(acked, id)
							}
							mu.Unlock()
						} else {
							from := float64(rng.IntN(96)) / 4
							r := booking(fmt.Sprint("hot-", rng.IntN(3)), from, from+float64(1+rng.IntN(16))/4)
							resp, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: r})
							recordCall(&calls, feedtest.Create, resp.GetReservation(), "", err)
							mu.Lock()
							codesSeen[status.Code(err)]++
							if err == nil {
								acked[resp.GetReservation().GetId()] = true
								mine = append(mine, resp.GetReservation().GetId())
							}
							mu.Unlock()
						}
						cancel()
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
				t.Errorf("outcomes %v: the workload should both succeed and conflict", codesSeen)
			}
			if n := overlaps(t, db); n != 0 {
				t.Fatalf("%d pairs of stored reservations overlap", n)
			}
			var stored []string
			if err := db.Select(&stored, "SELECT id FROM reservations"); err != nil {
				t.Fatal(err)
			}
			if len(stored) != len(acked) {
				t.Errorf("%d reservations stored, %d acknowledged and not cancelled", len(stored), len(acked))
			}
			for _, id := range stored {
				if !acked[id] {
					t.Errorf("stored reservation %s was never acknowledged", id)
				}
			}
			var feed []struct {
				Seq uint64 `db:"seq"`
				ID  string `db:"reservation_id"`
				Op  int    `db:"op"`
			}
			total := count(t, db, "SELECT COUNT(*) FROM reservation_changes")
			var heard [][]*pb.ListenResponse
			for i, l := range listeners {
				got := l.wait(t, total)
				heard = append(heard, got)
				if feed == nil {
					if err := db.Select(&feed, "SELECT seq, reservation_id, op FROM reservation_changes ORDER BY seq"); err != nil {
						t.Fatal(err)
					}
				}
				for j, m := range got {
					if f := feed[j]; m.Seq != uint64(j+1) || f.Seq != m.Seq || f.ID != m.Reservation.Id || f.Op != int(m.Op) {
						t.Fatalf("listener on replica %d, change %d: seq %d %v %s; stored: seq %d op %d %s", i, j, m.Seq, m.Op, m.Reservation.Id, f.Seq, f.Op, f.ID)
					}
				}
			}
			// Change by change, what each listener heard (after seq 0 of a new database) is
			// what the calls were answered.
			for _, d := range calls.Check(0, heard...) {
				t.Error("feed unlike the calls: " + d)
			}
			// Every write recorded exactly one change, numbered in its resource's order.
			if n := count(t, db, "SELECT COUNT(*) FROM resources r WHERE version <> (SELECT COUNT(*) FROM reservation_changes c WHERE c.resource_id = r.id)"); n != 0 {
				t.Errorf("%d resources whose version differs from their number of changes", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM (SELECT 1 FROM reservation_changes GROUP BY resource_id, resource_version HAVING COUNT(*) > 1) d"); n != 0 {
				t.Errorf("%d resource versions recorded twice", n)
			}
			var refused int64
			for _, r := range replicas {
				refused += r.taken.Stats().Refused
			}
			t.Logf("%d conflicts refused from the replicas' caches", refused)
			if refused == 0 {
				t.Error("no conflict was refused from a cache: the workload should exercise them")
			}
			var lockDown int64
			for _, s := range stores {
				lockDown += s.Stats().LockUnavailable
			}
			if (name == "redis unreachable") != (lockDown > 0) {
				t.Errorf("%d writes went ahead without the lock", lockDown)
			}
			var lost int64
			for _, l := range redisLockers {
				lost += l.Stats().Lost
			}
			if (name == "redis lock expiring mid-write") != (lost > 0) {
				t.Errorf("%d locks expired before their release", lost)
			}
		})
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	db := openLazily(t, "root@tcp("+locktest.ClosedAddr(t)+")/nowhere?timeout=1s")
	c := startReplica(t, db, nil).client
	_, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("r", 0, 1)})
	wantCode(t, err, codes.Unavailable)
	_, err = c.Get(ctxFor(t), &pb.GetRequest{Id: "01a204ab-6318-7baf-a7ed-a35f0ef10590"})
	wantCode(t, err, codes.Unavailable)
	_, err = c.Filter(ctxFor(t), &pb.FilterRequest{})
	wantCode(t, err, codes.Unavailable)
}

// A writer that cannot get the resource's lock within the wait bound gets ABORTED, and nothing
// is written.
func TestLockWaitBoundIsAborted(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	locker := lock.NewLocal(200 * time.Millisecond)
	c := startReplica(t, db, locker).client
	unlock, err := locker.Lock(context.Background(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock(context.Background())
	_, err = c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: booking("busy", 0, 1)})
	wantCode(t, err, codes.Aborted)
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Errorf("%d rows written by an aborted call", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("busy", 0, 1)})
	wantCode(t, err, codes.DeadlineExceeded)
}

// collector gathers what a Listen stream delivers, from the start of the feed.
type collector struct {
	mu   sync.Mutex
	got  []*pb.ListenResponse
	err  error
	more chan struct{}
}

func collect(t *testing.T, c pb.ReservationServiceClient) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := c.Listen(ctx, &pb.ListenRequest{AfterSeq: new(uint64)})
	if err != nil {
		t.Fatal(err)
	}
	l := &collector{more: make(chan struct{}, 1)}
	go func() {
		for {
			m, err := stream.Recv()
			l.mu.Lock()
			l.got, l.err = append(l.got, m), err
			l.mu.Unlock()
			select {
			case l.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return l
}

// wait returns the first n changes once they have come, failing the test if the stream
// ends or they take too long.
func (l *collector) wait(t *testing.T, n int) []*pb.ListenResponse {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		got, err := l.got, l.err
		l.mu.Unlock()
		switch {
		case err != nil:
			t.Fatalf("listener ended after %d changes: %v", len(got)-1, err)
		case len(got) >= n:
			if len(got) > n {
				t.Fatalf("listener got %d changes, %d stored", len(got), n)
			}
			return got
		}
		select {
		case <-l.more:
		case <-timeout:
			t.Fatalf("listener got %d of %d changes", len(got), n)
		}
	}
}

// recordCall notes a write call and its answer in calls: acknowledged with the reservation r
// it returned, refused for good (nothing written), or of unknown outcome (a timeout or a lost
// connection: it may have written, on reservation id, any reservation when id is empty).
func recordCall(calls *feedtest.Calls, op pb.ReservationUpdateType, r *pb.Reservation, id string, err error) {
	switch status.Code(err) {
	case codes.OK:
		calls.Acked(op, r)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Unknown, codes.Internal:
		calls.Unknown(op, id, "")
	default:
		calls.Refused()
	}
}
