package repo_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// storeVariants are the write paths a Reserve can take: group commit (the default), each
// call on its own, and with the lock-free precheck in front.
var storeVariants = map[string]repo.Options{
	"group":     {},
	"alone":     {GroupCommit: 1},
	"precheck":  {Precheck: true},
	"precheck1": {Precheck: true, GroupCommit: 1},
}

func TestCatalogueOpenCreatesStrictRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	open := repo.New(db, repo.Options{})
	if _, err := open.Reserve(ctx, reservation.Book(window("typo-room", 1, 2))); err != nil {
		t.Fatal(err)
	}
	r, err := open.GetResource(ctx, "typo-room")
	if err != nil {
		t.Fatal(err)
	}
	if r.Capacity != 1 || r.PoolID != "" || r.TimeZone != "UTC" || r.Version != 1 || r.Disabled {
		t.Errorf("resource made by its first reservation: %+v, want capacity 1, no pool, UTC, version 1", r)
	}
	for name, opts := range storeVariants {
		opts.StrictCatalogue = true
		strict := repo.New(db, opts)
		_, err := strict.Reserve(ctx, reservation.Book(window("unknown-"+name, 1, 2)))
		if reservation.ErrorCode(err) != reservation.ENOTFOUND || !strings.Contains(err.Error(), "reservation.resource_id") {
			t.Errorf("%s: strict Reserve of an unknown resource: %v, want ENOTFOUND naming reservation.resource_id", name, err)
		}
		_, err = strict.Reserve(ctx, reservation.Book(window("typo-room", 3, 4), window("unknown-"+name, 3, 4)))
		if reservation.ErrorCode(err) != reservation.ENOTFOUND || !strings.Contains(err.Error(), "reservations[1].resource_id") {
			t.Errorf("%s: strict batch with an unknown resource: %v, want ENOTFOUND naming reservations[1].resource_id", name, err)
		}
		if _, err := strict.GetResource(ctx, "unknown-"+name); reservation.ErrorCode(err) != reservation.ENOTFOUND {
			t.Errorf("%s: the refused Reserve created its resource: %v", name, err)
		}
		if _, err := strict.PutResource(ctx, &reservation.Resource{ID: "unknown-" + name}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := strict.Reserve(ctx, reservation.Book(window("unknown-"+name, 1, 2))); err != nil {
			t.Errorf("%s: strict Reserve of a resource put before: %v", name, err)
		}
	}
}

func TestDisabledResourceRefusesReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	for name, opts := range storeVariants {
		s := repo.New(db, opts)
		id := "room-" + name
		kept, err := s.Reserve(ctx, reservation.Book(window(id, 1, 2)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, Disabled: true}, 0); err != nil {
			t.Fatal(err)
		}
		_, err = s.Reserve(ctx, reservation.Book(window(id, 5, 6)))
		var e *reservation.Error
		if !errors.As(err, &e) || e.Code != reservation.ESTATE || e.Reason != reservation.ReasonResourceDisabled {
			t.Errorf("%s: Reserve of a disabled resource: %v, want ESTATE %s", name, err, reservation.ReasonResourceDisabled)
		}
		if _, err := s.Get(ctx, kept[0].ID); err != nil {
			t.Errorf("%s: a reservation made before disabling is gone: %v", name, err)
		}
	}
}

func TestPutResourceVersionsAndList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	s := repo.New(db, repo.Options{})
	in := &reservation.Resource{ID: "room-101", PoolID: "deluxe-king", TimeZone: "Europe/Paris", DisplayName: "Room 101 — sea view",
		Labels: map[string]string{"floor": "1", "view": "sea"}}
	r, err := s.PutResource(ctx, in, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != 1 || r.Capacity != 1 || r.CreatedAt.IsZero() {
		t.Errorf("created: %+v, want version 1, capacity 1", r)
	}
	got, err := s.GetResource(ctx, "room-101")
	if err != nil {
		t.Fatal(err)
	}
	if got.PoolID != in.PoolID || got.TimeZone != in.TimeZone || got.DisplayName != in.DisplayName || !maps.Equal(got.Labels, in.Labels) || got.Version != 1 {
		t.Errorf("GetResource = %+v, want what was put", got)
	}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room-101", PoolID: "deluxe-king", Capacity: 2}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room-101"}, 1); reservation.ErrorCode(err) != reservation.EABORTED {
		t.Errorf("Put at a stale version: %v, want EABORTED", err)
	}
	if _, err := s.PutResource(ctx, &reservation.Resource{ID: "room-999"}, 3); reservation.ErrorCode(err) != reservation.EABORTED {
		t.Errorf("Put of a missing resource expecting version 3: %v, want EABORTED", err)
	}
	if got, _ := s.GetResource(ctx, "room-101"); got.Version != 2 || got.Capacity != 2 || len(got.Labels) != 0 {
		t.Errorf("after a replace: %+v, want version 2, capacity 2, labels gone", got)
	}
	for _, id := range []string{"room-103", "room-102", "spot-1"} {
		pool := "deluxe-king"
		if id == "spot-1" {
			pool = "level-1"
		}
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, PoolID: pool}, 0); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.ListResources(ctx, reservation.ResourceFilter{PoolID: "deluxe-king", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	rest, err := s.ListResources(ctx, reservation.ResourceFilter{PoolID: "deluxe-king", After: page[len(page)-1].ID})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range append(page, rest...) {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "room-101,room-102,room-103" {
		t.Errorf("pool deluxe-king lists %v, want room-101..103 in id order", ids)
	}
}

// TestCapacityEdges: on a resource of capacity N the peak number of reservations at an
// instant decides, in every write path.
func TestCapacityEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := repotest.NewDB(t)
	for name, opts := range storeVariants {
		s := repo.New(db, opts)
		id := "lot-" + name
		w := func(from, to int) *reservation.Reservation { return window(id, from, to) }
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, Capacity: 2}, 0); err != nil {
			t.Fatal(err)
		}
		// Three back to back, then one across them all: never more than 2 at once.
		var made []*reservation.Reservation
		for _, r := range []*reservation.Reservation{w(9, 11), w(11, 13), w(13, 15), w(10, 14)} {
			out, err := s.Reserve(ctx, reservation.Book(r))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			made = append(made, out[0])
		}
		// 12-13: the one of 11-13 and the one across are there, the resource is full.
		_, err := s.Reserve(ctx, reservation.Book(w(12, 13)))
		var e *reservation.Error
		if !errors.As(err, &e) || e.Code != reservation.ECONFLICT {
			t.Fatalf("%s: a third at 12: %v, want a conflict", name, err)
		}
		var named []string
		for _, c := range e.Conflicts {
			named = append(named, c.Existing.ID)
		}
		if want := []string{made[1].ID, made[3].ID}; !sameSet(named, want) {
			t.Errorf("%s: conflict names %v, want %v (those there at 12:00)", name, named, want)
		}
		// A batch whose two items fill the last place between them: refused.
		if _, err := s.Reserve(ctx, reservation.Book(w(15, 17), w(16, 18), w(16, 17))); reservation.ErrorCode(err) != reservation.ECONFLICT {
			t.Errorf("%s: a batch of three at 16 on capacity 2: %v, want a conflict", name, err)
		}
		// One stored and two items of a batch at 21: three at once on capacity 2.
		if _, err := s.Reserve(ctx, reservation.Book(w(20, 22))); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(w(21, 23), w(21, 22))); reservation.ErrorCode(err) != reservation.ECONFLICT {
			t.Errorf("%s: a batch of two at 21 beside one stored, capacity 2: %v, want a conflict", name, err)
		}
		// Lowering the capacity to 1: at 10:00 two are booked.
		_, err = s.PutResource(ctx, &reservation.Resource{ID: id, Capacity: 1}, 0)
		if reservation.ErrorCode(err) != reservation.ESTATE || !strings.Contains(err.Error(), "2031-05-04T10:00:00Z") {
			t.Errorf("%s: lowering capacity below the booked level: %v, want ESTATE naming 10:00", name, err)
		}
		if _, err := s.PutResource(ctx, &reservation.Resource{ID: id, Capacity: 3}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Reserve(ctx, reservation.Book(w(12, 13))); err != nil {
			t.Errorf("%s: a third at 12 once capacity is 3: %v", name, err)
		}
		free, err := s.FreeSlots(ctx, reservation.SlotQuery{ResourceID: id, Start: base.Add(8 * time.Hour), End: base.Add(16 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		h := func(n int) time.Time { return base.Add(time.Duration(n) * time.Hour) }
		want := []reservation.Window{
			{Start: h(8), End: h(9), Available: 3}, {Start: h(9), End: h(10), Available: 2},
			{Start: h(10), End: h(12), Available: 1}, {Start: h(13), End: h(14), Available: 1},
			{Start: h(14), End: h(15), Available: 2}, {Start: h(15), End: h(16), Available: 3},
		}
		if !equalWindows(free, want) {
			t.Errorf("%s: FreeSlots = %v, want %v", name, free, want)
		}
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func equalWindows(a, b []reservation.Window) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Start.Equal(b[i].Start) || !a[i].End.Equal(b[i].End) || a[i].Available != b[i].Available {
			return false
		}
	}
	return true
}
