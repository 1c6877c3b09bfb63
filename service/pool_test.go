package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"reservation"
	"reservation/lock/locktest"
	pb "reservation/proto/reservation/v1"
	"reservation/queue"
	"reservation/readindex"
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
	type variant struct {
		name    string
		locker  func(t *testing.T, prefix string) reservation.Locker
		indexed bool // each replica runs a read index, as reservationd does: pool calls take their units from it
	}
	variants := []variant{{"redis, read index", lockers["redis"], true}}
	for name, newLocker := range lockers {
		variants = append(variants, variant{name, newLocker, false})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
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
				opts := replicaOptions(queue.Options{})
				if v.indexed {
					opts.ReadIndex = readindex.Options{MaxReservations: readindex.DefaultMaxReservations, Logger: quiet}
				}
				replicas = append(replicas, startReplicaOpts(t, pool, v.locker(t, prefix), opts))
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
			var fromMemory int64
			for _, r := range replicas {
				fromMemory += r.store.Stats().UnitsFromMemory
			}
			t.Logf("%d pool tries took their units from the read index", fromMemory)
			if (fromMemory > 0) != v.indexed {
				t.Errorf("%d pool tries took their units from the read index, want them to %s", fromMemory, map[bool]string{true: "(it runs)", false: "not (it does not run)"}[v.indexed])
			}
		})
	}
}

// POOL_FULL names the pool, the window refused and the item of the call it refused, in its
// ErrorInfo's metadata, over gRPC and over HTTP (409, as a conflict).
func TestPoolFullNamesThePool(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	r := startReplica(t, db, nil)
	for _, u := range []string{"room-1", "room-2"} {
		if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: u, PoolId: "deluxe"}}); err != nil {
			t.Fatal(err)
		}
	}
	pooled := func(from, to float64) *pb.Reservation {
		b := booking("", from, to)
		b.PoolId = "deluxe"
		return b
	}
	reserve(t, r.client, pooled(1, 3))
	reserve(t, r.client, pooled(2, 4))
	want := func(item int) map[string]string {
		return map[string]string{"pool_id": "deluxe", "start": "2030-03-01T11:00:00Z", "end": "2030-03-01T13:00:00Z", "item": fmt.Sprint(item)}
	}
	check := func(what string, ei *errdetails.ErrorInfo, item int) {
		t.Helper()
		if ei.GetReason() != reservation.ReasonPoolFull || ei.GetDomain() != service.ErrorDomain || !maps.Equal(ei.GetMetadata(), want(item)) {
			t.Errorf("%s: ErrorInfo %v, want %s of %s with metadata %v", what, ei, reservation.ReasonPoolFull, service.ErrorDomain, want(item))
		}
	}

	_, err := r.client.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: pooled(2, 4)})
	check("Reserve", conflictInfo(wantCode(t, err, codes.FailedPrecondition)), 0)
	_, err = r.client.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{booking("room-9", 2, 4), pooled(2, 4)}})
	check("ReserveBatch", conflictInfo(wantCode(t, err, codes.FailedPrecondition)), 1)

	item := map[string]any{"user_id": "alice", "pool_id": "deluxe", "start": "2030-03-01T11:00:00Z", "end": "2030-03-01T13:00:00Z"}
	for _, c := range []struct {
		path string
		body map[string]any
		item int
	}{
		{"/v1/reservations", map[string]any{"reservation": item}, 0},
		{"/v1/reservations:batch", map[string]any{"reservations": []any{map[string]any{"user_id": "alice", "resource_id": "room-9", "start": "2030-03-01T08:00:00Z", "end": "2030-03-01T09:00:00Z"}, item}}, 1},
	} {
		code, body := r.httpJSON(t, "POST", c.path, c.body)
		var answer struct {
			Error struct {
				Code    int `json:"code"`
				Details []struct {
					Reason   string            `json:"reason"`
					Domain   string            `json:"domain"`
					Metadata map[string]string `json:"metadata"`
				} `json:"details"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &answer); err != nil || code != http.StatusConflict || answer.Error.Code != int(codes.FailedPrecondition) || len(answer.Error.Details) != 1 {
			t.Fatalf("POST %s of a full pool: %d %s; want 409 with one ErrorInfo under \"error\"", c.path, code, body)
		}
		d := answer.Error.Details[0]
		check("POST "+c.path, &errdetails.ErrorInfo{Reason: d.Reason, Domain: d.Domain, Metadata: d.Metadata}, c.item)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 2 {
		t.Errorf("%d reservations stored, want 2: POOL_FULL writes nothing", n)
	}
}

// A pooled item of a batch is given a unit that fits beside every direct item of the batch,
// before or after it, and beside the pooled items given theirs before it. A batch that
// cannot fit that way is refused whole: POOL_FULL or RESERVATION_CONFLICT, nothing written.
func TestPoolBatchFitsBesideEveryDirectItem(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	r := startReplica(t, db, nil)
	for _, u := range []*pb.Resource{{Id: "u1", PoolId: "p"}, {Id: "u2", PoolId: "p"}, {Id: "c1", PoolId: "q", Capacity: 2}, {Id: "c2", PoolId: "q"}} {
		if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: u}); err != nil {
			t.Fatal(err)
		}
	}
	pooled := func(pool string, from, to float64) *pb.Reservation {
		b := booking("", from, to)
		b.PoolId = pool
		return b
	}
	units := func(resp *pb.ReserveBatchResponse) []string {
		var out []string
		for _, b := range resp.GetReservations() {
			out = append(out, b.GetResourceId())
		}
		return out
	}
	for _, c := range []struct {
		name  string
		batch []*pb.Reservation
		units []string
	}{
		{"direct item after", []*pb.Reservation{pooled("p", 1, 3), booking("u1", 1, 3)}, []string{"u2", "u1"}},
		{"direct item before", []*pb.Reservation{booking("u1", 4, 6), pooled("p", 4, 6)}, []string{"u1", "u2"}},
		{"two pooled around a direct", []*pb.Reservation{pooled("p", 7, 9), booking("u2", 8, 10), pooled("p", 8, 9)}, []string{"u1", "u2", ""}},
		{"capacity 2 filled by the direct items after", []*pb.Reservation{pooled("q", 1, 3), booking("c1", 1, 3), booking("c1", 2, 4)}, []string{"c2", "c1", "c1"}},
	} {
		resp, err := r.client.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: c.batch})
		if c.units[len(c.units)-1] == "" {
			// u1 goes to the first pooled item, u2 to the direct one: the last pooled item of
			// 8-9 has no unit left.
			ei := conflictInfo(wantCode(t, err, codes.FailedPrecondition))
			if ei.GetReason() != reservation.ReasonPoolFull || ei.GetMetadata()["item"] != "2" {
				t.Errorf("%s: %v, want POOL_FULL for item 2", c.name, ei)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v; want %v", c.name, err, c.units)
			continue
		}
		if got := units(resp); !slices.Equal(got, c.units) {
			t.Errorf("%s: units %v, want %v", c.name, got, c.units)
		}
	}
	stored := count(t, db, "SELECT COUNT(*) FROM reservations")
	if stored != 7 {
		t.Fatalf("%d reservations stored, want 7", stored)
	}
	// Windows that cannot fit: every unit of p taken by the batch's direct items, a conflict
	// between the direct items, and two pooled items for one free unit.
	for _, c := range []struct {
		name   string
		batch  []*pb.Reservation
		reason string
		item   string // the metadata naming the item refused
	}{
		{"both units taken by direct items", []*pb.Reservation{pooled("p", 11, 13), booking("u1", 11, 13), booking("u2", 12, 14)}, reservation.ReasonPoolFull, "item"},
		{"direct items in each other's way", []*pb.Reservation{pooled("p", 11, 13), booking("u1", 11, 13), booking("u1", 12, 14)}, service.ConflictReason, "conflict_0_item"},
		{"one unit left for two", []*pb.Reservation{pooled("p", 11, 13), pooled("p", 12, 13), booking("u1", 11, 13)}, reservation.ReasonPoolFull, "item"},
		{"capacity 2 and a unit, three direct and one pooled", []*pb.Reservation{pooled("q", 11, 13), booking("c1", 11, 13), booking("c1", 12, 14), booking("c2", 12, 13)}, reservation.ReasonPoolFull, "item"},
	} {
		_, err := r.client.ReserveBatch(ctxFor(t), &pb.ReserveBatchRequest{Reservations: c.batch})
		st := status.Convert(err)
		if ei := conflictInfo(st); st.Code() != codes.FailedPrecondition || ei.GetReason() != c.reason || ei.GetMetadata()[c.item] == "" {
			t.Errorf("%s: %v, want FAILED_PRECONDITION, %s naming %s", c.name, err, c.reason, c.item)
		}
		if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != stored {
			t.Errorf("%s: %d reservations stored, want %d: a refused batch writes nothing", c.name, n, stored)
		}
	}
	if n := overlaps(t, db); n != 1 {
		t.Errorf("%d pairs of stored reservations overlap, want 1 (c1 of capacity 2 holds both of its)", n)
	}
}

// FreeSlots on a pool over HTTP, GET /v1/pools/{pool_id}/free: each enabled unit's free
// windows, tagged with the unit and its places left, as gRPC answers them.
func TestPoolFreeSlotsOverHTTP(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	for _, u := range []*pb.Resource{{Id: "room-1", PoolId: "deluxe"}, {Id: "room-2", PoolId: "deluxe", Capacity: 2}, {Id: "room-3", PoolId: "deluxe", Disabled: true}} {
		if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: u}); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, r.client, booking("room-1", 1, 2))
	reserve(t, r.client, booking("room-2", 1, 3))
	reserve(t, r.client, booking("room-2", 2, 4))

	code, body := r.httpJSON(t, "GET", "/v1/pools/deluxe/free?start=2030-03-01T09:00:00Z&end=2030-03-01T14:00:00Z&min_duration=1800s", nil)
	var answer struct {
		Free []struct {
			Start      string `json:"start"`
			End        string `json:"end"`
			ResourceID string `json:"resource_id"`
			Available  int    `json:"available"`
		} `json:"free"`
	}
	if err := json.Unmarshal(body, &answer); code != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/pools/deluxe/free: %d %s", code, body)
	}
	var got []string
	for _, w := range answer.Free {
		got = append(got, fmt.Sprintf("%s %s-%s %d", w.ResourceID, w.Start[11:16], w.End[11:16], w.Available))
	}
	want := []string{
		"room-1 09:00-10:00 1", "room-1 11:00-14:00 1",
		"room-2 09:00-10:00 2", "room-2 10:00-11:00 1", "room-2 12:00-13:00 1", "room-2 13:00-14:00 2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("pool's free windows over HTTP:\ngot  %v\nwant %v", got, want)
	}
	resp, err := r.client.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{PoolId: "deluxe", Start: at(0), End: at(5), MinDuration: durationpb.New(30 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFree()) != len(answer.Free) {
		t.Errorf("gRPC answers %d windows, HTTP %d", len(resp.GetFree()), len(answer.Free))
	}
	for i, w := range resp.GetFree() {
		if i < len(answer.Free) && (w.GetResourceId() != answer.Free[i].ResourceID || reservation.FormatTime(w.GetStart().AsTime()) != answer.Free[i].Start || int(w.GetAvailable()) != answer.Free[i].Available) {
			t.Errorf("window %d: gRPC %v, HTTP %+v", i, w, answer.Free[i])
		}
	}
	// The pool's path chooses the pool: a resource_id in its query is refused, naming it.
	code, body = r.httpJSON(t, "GET", "/v1/pools/deluxe/free?start=2030-03-01T09:00:00Z&end=2030-03-01T14:00:00Z&resource_id=room-1", nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"resource_id"`) {
		t.Errorf("a pool's free windows with a resource_id: %d %s; want 400 naming resource_id", code, body)
	}
}
