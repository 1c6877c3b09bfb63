package service_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/repo/repotest"
	"reservation/service"
)

// The brute-force checks of FreeSlots below book random layouts through a real replica
// (gRPC, the store, MariaDB), then compare FreeSlots with a scan of the bookings slot by slot.
// Every booking and query window falls on a slot of slotLen, so that the scan is exact;
// min_duration is whole slots or any number of minutes, so it falls on and between slots.
const (
	slotLen  = 15 * time.Minute
	daySlots = 96 // one day from base
)

func slotTime(s int) time.Time { return base.Add(time.Duration(s) * slotLen) }

// slotOf spells t as its slot, or in full when it is not the start of one.
func slotOf(t time.Time) string {
	if d := t.Sub(base); d%slotLen == 0 {
		return fmt.Sprint(int(d / slotLen))
	}
	return reservation.FormatTime(t)
}

// usage counts, slot by slot, the live reservations of each resource the test booked.
type usage map[string][]int

func (u usage) add(r *pb.Reservation, n int) {
	if u[r.GetResourceId()] == nil {
		u[r.GetResourceId()] = make([]int, daySlots)
	}
	from, to := int(r.GetStart().AsTime().Sub(base)/slotLen), int(r.GetEnd().AsTime().Sub(base)/slotLen)
	for s := from; s < to; s++ {
		u[r.GetResourceId()][s] += n
	}
}

// bruteFree is what FreeSlots must answer for one resource of capacity with used reservations
// per slot, inside slots [from, to): each run of slots with a place left that lasts at least
// minDur, split where the number of places left changes, as "resource from-to available" in
// slots.
func bruteFree(resource string, capacity int, used []int, from, to int, minDur time.Duration) []string {
	left := func(s int) int {
		if used == nil {
			return capacity
		}
		return capacity - used[s]
	}
	var out []string
	for s := from; s < to; {
		if left(s) <= 0 {
			s++
			continue
		}
		end := s
		for end < to && left(end) > 0 {
			end++
		}
		if slotTime(end).Sub(slotTime(s)) >= minDur {
			for p := s; p < end; {
				e := p
				for e < end && left(e) == left(p) {
					e++
				}
				out = append(out, fmt.Sprintf("%s %d-%d %d", resource, p, e, left(p)))
				p = e
			}
		}
		s = end
	}
	return out
}

// windows spells FreeSlots' answer as bruteFree does, naming resource for windows that name
// none (the answer about a resource).
func windows(resp *pb.FreeSlotsResponse, resource string) []string {
	var out []string
	for _, w := range resp.GetFree() {
		r := w.GetResourceId()
		if r == "" {
			r = resource
		}
		out = append(out, fmt.Sprintf("%s %s-%s %d", r, slotOf(w.GetStart().AsTime()), slotOf(w.GetEnd().AsTime()), w.GetAvailable()))
	}
	return out
}

// The scan itself, on a layout worked out by hand: capacity 2, one booking over slots 2-6
// and one over 4-8.
func TestBruteFreeByHand(t *testing.T) {
	used := make([]int, daySlots)
	for s := 2; s < 6; s++ {
		used[s]++
	}
	for s := 4; s < 8; s++ {
		used[s]++
	}
	for _, c := range []struct {
		from, to int
		minDur   time.Duration
		want     []string
	}{
		{0, 10, 0, []string{"r 0-2 2", "r 2-4 1", "r 6-8 1", "r 8-10 2"}},
		{3, 9, 0, []string{"r 3-4 1", "r 6-8 1", "r 8-9 2"}},
		{0, 10, time.Hour, []string{"r 0-2 2", "r 2-4 1", "r 6-8 1", "r 8-10 2"}},
		{0, 10, time.Hour + time.Minute, nil},
		{4, 6, 0, nil},
	} {
		if got := bruteFree("r", 2, used, c.from, c.to, c.minDur); !slices.Equal(got, c.want) {
			t.Errorf("slots %d-%d, min %s: %v, want %v", c.from, c.to, c.minDur, got, c.want)
		}
	}
	if got := bruteFree("r", 3, nil, 5, 7, 0); !slices.Equal(got, []string{"r 5-7 3"}) {
		t.Errorf("a resource with no booking: %v", got)
	}
}

// randomQuery is a FreeSlots window of whole slots and a min_duration up to two hours: half
// the time whole slots (a run of free slots may last exactly that), else any minutes.
func randomQuery(rng *rand.Rand) (from, to int, minDur time.Duration) {
	from = rng.IntN(daySlots - 1)
	to = from + 1 + rng.IntN(daySlots-from)
	if rng.IntN(2) == 0 {
		return from, to, time.Duration(rng.IntN(9)) * slotLen
	}
	return from, to, time.Duration(rng.IntN(121)) * time.Minute
}

// bookRandomly books n random windows of 1 to maxLen slots through c, each on a resource
// pick chooses (a unit, or a pool when it sets PoolId), a third as holds of an hour (they
// outlast the test, so they stay busy), and cancels about one in five of those booked. It
// returns the reservations still booked. A refusal (conflict, POOL_FULL) books nothing.
func bookRandomly(t *testing.T, c pb.ReservationServiceClient, rng *rand.Rand, n, maxLen int, pick func(r *pb.Reservation)) []*pb.Reservation {
	t.Helper()
	var booked []*pb.Reservation
	for range n {
		from := rng.IntN(daySlots - 1)
		to := min(from+1+rng.IntN(maxLen), daySlots)
		r := &pb.Reservation{UserId: "alice", Start: timestamppb.New(slotTime(from)), End: timestamppb.New(slotTime(to))}
		pick(r)
		req := &pb.ReserveRequest{Reservation: r}
		if rng.IntN(3) == 0 {
			req.Hold = durationpb.New(time.Hour)
		}
		resp, err := c.Reserve(ctxFor(t), req)
		if status.Code(err) == codes.FailedPrecondition {
			continue
		}
		if err != nil {
			t.Fatalf("Reserve %v: %v", r, err)
		}
		booked = append(booked, resp.GetReservation())
	}
	var kept []*pb.Reservation
	for _, r := range booked {
		if rng.IntN(5) == 0 {
			if _, err := c.Cancel(ctxFor(t), &pb.CancelRequest{Id: r.GetId()}); err != nil {
				t.Fatalf("Cancel %s: %v", r.GetId(), err)
			}
			continue
		}
		kept = append(kept, r)
	}
	return kept
}

// TestPoolFreeSlotsAgainstBruteForce: 50 random pools of 1 to 4 units, each of capacity 1 to
// 3, about one unit in four disabled after its bookings were made (its bookings stay, and it
// is left out), with up to 16 bookings each, direct or through the pool, some held, some
// cancelled. Five FreeSlots queries per pool, over gRPC, must answer each enabled unit's free
// windows (by unit id, tagged resource_id, with available) as a scan of the bookings finds
// them at 15-minute slot granularity over one day.
func TestPoolFreeSlotsAgainstBruteForce(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	rng := rand.New(rand.NewPCG(17, 4))
	const layouts = 50
	var windowsChecked, disabledUnits, emptyAnswers int
	for l := range layouts {
		pool := fmt.Sprintf("pool-%02d", l)
		type unit struct {
			id       string
			capacity int
			disabled bool
		}
		units := make([]unit, 1+rng.IntN(4))
		for i := range units {
			units[i] = unit{id: fmt.Sprintf("%s-u%d", pool, i), capacity: 1 + rng.IntN(3), disabled: rng.IntN(4) == 0}
			res := &pb.Resource{Id: units[i].id, PoolId: pool, Capacity: int32(units[i].capacity)}
			if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: res}); err != nil {
				t.Fatal(err)
			}
		}
		booked := bookRandomly(t, r.client, rng, rng.IntN(17), 12, func(b *pb.Reservation) {
			if rng.IntN(3) == 0 {
				b.PoolId = pool
			} else {
				b.ResourceId = units[rng.IntN(len(units))].id
			}
		})
		used := usage{}
		for _, b := range booked {
			used.add(b, 1)
		}
		for _, u := range units {
			if u.disabled {
				disabledUnits++
				res := &pb.Resource{Id: u.id, PoolId: pool, Capacity: int32(u.capacity), Disabled: true}
				if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: res}); err != nil {
					t.Fatal(err)
				}
			}
		}
		for range 5 {
			from, to, minDur := randomQuery(rng)
			var want []string
			for _, u := range units {
				if !u.disabled {
					want = append(want, bruteFree(u.id, u.capacity, used[u.id], from, to, minDur)...)
				}
			}
			resp, err := r.client.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{PoolId: pool, Start: timestamppb.New(slotTime(from)), End: timestamppb.New(slotTime(to)), MinDuration: durationpb.New(minDur)})
			if err != nil {
				t.Fatal(err)
			}
			if got := windows(resp, ""); !slices.Equal(got, want) {
				t.Fatalf("layout %d, units %+v, booked %v, slots %d-%d, min %s:\ngot  %v\nwant %v", l, units, spell(booked), from, to, minDur, got, want)
			}
			windowsChecked += len(want)
			if len(want) == 0 {
				emptyAnswers++
			}
		}
	}
	t.Logf("%d layouts, %d disabled units, %d windows checked, %d empty answers", layouts, disabledUnits, windowsChecked, emptyAnswers)
	if disabledUnits == 0 || emptyAnswers == 0 || windowsChecked < layouts {
		t.Errorf("the layouts should have disabled units, full queries and many windows")
	}
}

// TestCapacityFreeSlotsAgainstBruteForce: 50 random resources of capacity 1 to 4 (not
// pooled), each with up to 20 bookings of up to 24 slots, some held, some cancelled. Six
// FreeSlots queries per resource, over gRPC, must answer the windows with a place left, split
// where the places left change, each with available, as a scan of the bookings finds them at
// 15-minute slot granularity over one day. (The pure logic, reservation.FreePlaces, has its
// own brute-force test at minute granularity: TestFreePlacesAgainstBruteForce.)
func TestCapacityFreeSlotsAgainstBruteForce(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	rng := rand.New(rand.NewPCG(5, 23))
	const layouts = 50
	var windowsChecked, split, full int
	for l := range layouts {
		id := fmt.Sprintf("cap-%02d", l)
		capacity := 1 + rng.IntN(4)
		if _, err := r.client.PutResource(ctxFor(t), &pb.PutResourceRequest{Resource: &pb.Resource{Id: id, Capacity: int32(capacity)}}); err != nil {
			t.Fatal(err)
		}
		booked := bookRandomly(t, r.client, rng, rng.IntN(21), 24, func(b *pb.Reservation) { b.ResourceId = id })
		used := usage{}
		for _, b := range booked {
			used.add(b, 1)
		}
		if u := used[id]; u != nil && slices.Max(u) > capacity {
			t.Fatalf("layout %d: %d booked at once on capacity %d", l, slices.Max(u), capacity)
		}
		for range 6 {
			from, to, minDur := randomQuery(rng)
			want := bruteFree(id, capacity, used[id], from, to, minDur)
			resp, err := r.client.FreeSlots(ctxFor(t), &pb.FreeSlotsRequest{ResourceId: id, Start: timestamppb.New(slotTime(from)), End: timestamppb.New(slotTime(to)), MinDuration: durationpb.New(minDur)})
			if err != nil {
				t.Fatal(err)
			}
			if got := windows(resp, id); !slices.Equal(got, want) {
				t.Fatalf("layout %d, capacity %d, booked %v, slots %d-%d, min %s:\ngot  %v\nwant %v", l, capacity, spell(booked), from, to, minDur, got, want)
			}
			windowsChecked += len(want)
			for i := 1; i < len(resp.GetFree()); i++ {
				if resp.GetFree()[i].GetStart().AsTime().Equal(resp.GetFree()[i-1].GetEnd().AsTime()) {
					split++
				}
			}
		}
		if u := used[id]; u != nil && slices.Max(u) == capacity {
			full++
		}
	}
	t.Logf("%d layouts, %d full at some slot, %d windows checked, %d splits where the places left change", layouts, full, windowsChecked, split)
	if full == 0 || split == 0 {
		t.Errorf("the layouts should fill resources and split windows")
	}
}

// spell lists reservations as "resource from-to", in slots.
func spell(rs []*pb.Reservation) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s %s-%s", r.GetResourceId(), slotOf(r.GetStart().AsTime()), slotOf(r.GetEnd().AsTime()))
	}
	return out
}

// A resource that takes no reservation offers no free window: a disabled one answers none,
// and in the strict catalogue one not in it is NOT_FOUND, as a Reserve of it would be.
func TestFreeSlotsOfAResourceThatTakesNoReservation(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	store := repo.New(db, repo.Options{Logger: quiet, StrictCatalogue: true})
	api := service.New(service.All(store, nil), service.Options{Logger: quiet})
	ctx := context.Background()
	if _, err := api.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room", Disabled: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "open"}}); err != nil {
		t.Fatal(err)
	}
	ask := func(id string) (*pb.FreeSlotsResponse, error) {
		return api.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: id, Start: at(0), End: at(4)})
	}
	if resp, err := ask("open"); err != nil || len(resp.GetFree()) != 1 {
		t.Fatalf("FreeSlots of an enabled resource: %v, %v; want its one free window", resp, err)
	}
	if resp, err := ask("room"); err != nil || len(resp.GetFree()) != 0 {
		t.Errorf("FreeSlots of a disabled resource: %v, %v; want no window", resp, err)
	}
	_, err := ask("nowhere")
	wantCode(t, err, codes.NotFound)
}
