package service_test

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/repo"
	"reservation/service"
)

func TestResourceCatalogueRPCs(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	ctx := ctxFor(t)

	_, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Capacity: -1, TimeZone: "Nowhere/Atlantis"}})
	st := wantCode(t, err, codes.InvalidArgument)
	for _, f := range []string{"resource.id", "resource.capacity", "resource.time_zone"} {
		if !slices.Contains(badFields(st), f) {
			t.Errorf("bad Put: fields %v, want %s among them", badFields(st), f)
		}
	}

	put, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{
		Id: "lot-a", PoolId: "level-1", Capacity: 2, TimeZone: "America/New_York", DisplayName: "Lot A", Labels: map[string]string{"ev": "yes"}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := put.GetResource(); r.GetVersion() != 1 || r.GetCapacity() != 2 || r.GetCreatedAt() == nil {
		t.Errorf("PutResource = %v, want version 1, capacity 2", r)
	}
	_, err = c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "lot-a", Capacity: 2}, ExpectedVersion: 7})
	wantCode(t, err, codes.Aborted)
	got, err := c.GetResource(ctx, &pb.GetResourceRequest{Id: "lot-a"})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.GetResource(); r.GetTimeZone() != "America/New_York" || r.GetLabels()["ev"] != "yes" || r.GetPoolId() != "level-1" {
		t.Errorf("GetResource = %v, want what was put", r)
	}
	_, err = c.GetResource(ctx, &pb.GetResourceRequest{Id: "lot-zz"})
	wantCode(t, err, codes.NotFound)

	// Capacity 2: two at once, not three; FreeSlots tells the places left.
	reserve(t, c, booking("lot-a", 0, 2))
	reserve(t, c, booking("lot-a", 1, 3))
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("lot-a", 1.5, 2)})
	st = wantCode(t, err, codes.FailedPrecondition)
	if ei := conflictInfo(st); ei.GetReason() != service.ConflictReason || ei.GetMetadata()["conflict_count"] != "2" {
		t.Errorf("a third at 1.5h: %v, want a conflict naming the two there", ei)
	}
	free, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: "lot-a", Start: at(0), End: at(4)})
	if err != nil {
		t.Fatal(err)
	}
	var places []int32
	for _, w := range free.GetFree() {
		places = append(places, w.GetAvailable())
	}
	if !slices.Equal(places, []int32{1, 1, 2}) || !free.GetFree()[0].GetEnd().AsTime().Equal(at(1).AsTime()) {
		t.Errorf("FreeSlots = %v, want 0-1h one place, 2-3h one, 3-4h two", free.GetFree())
	}

	// Disabled: no new reservation, with its reason.
	if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "lot-a", PoolId: "level-1", Capacity: 2, Disabled: true}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("lot-a", 10, 11)})
	st = wantCode(t, err, codes.FailedPrecondition)
	if ei := conflictInfo(st); ei.GetReason() != reservation.ReasonResourceDisabled {
		t.Errorf("Reserve of a disabled resource: ErrorInfo %v, want reason %s", ei, reservation.ReasonResourceDisabled)
	}

	for _, id := range []string{"lot-c", "lot-b"} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: id, PoolId: "level-1"}}); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, c, booking("desk-without-pool", 0, 1)) // the open catalogue creates it
	var ids []string
	req := &pb.ListResourcesRequest{PoolId: "level-1", PageSize: 2}
	for {
		resp, err := c.ListResources(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResources() {
			ids = append(ids, r.GetId())
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if !slices.Equal(ids, []string{"lot-a", "lot-b", "lot-c"}) {
		t.Errorf("pool level-1 lists %v, want lot-a, lot-b, lot-c", ids)
	}
	all, err := c.ListResources(ctx, &pb.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.GetResources()); n != 4 {
		t.Errorf("ListResources lists %d resources, want 4 (with the one its reservation made)", n)
	}
}

// With auth on, only admins put resources; everyone reads them.
func TestPutResourceIsForAdmins(t *testing.T) {
	t.Parallel()
	store := repo.New(newDB(t), repo.Options{Logger: quiet})
	api := service.New(service.All(store, nil), service.Options{Logger: quiet})
	user := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "bob"})
	admin := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "root", Admin: true})
	_, err := api.PutResource(user, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room-1"}})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := api.PutResource(admin, &pb.PutResourceRequest{Resource: &pb.Resource{Id: "room-1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetResource(user, &pb.GetResourceRequest{Id: "room-1"}); err != nil {
		t.Errorf("a user reading a resource: %v", err)
	}
	if _, err := api.ListResources(user, &pb.ListResourcesRequest{}); err != nil {
		t.Errorf("a user listing resources: %v", err)
	}
}

// A disabled resource's refusal names it and the refused item in its ErrorInfo, whichever way
// the call is written: a lone Reserve (group commit), one with a request id, a batch whose
// second item books it, and a batch whose first item is a pool booking. Nothing is written.
func TestResourceDisabledNamesResourceAndItem(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	for _, r := range []*pb.Resource{{Id: "room-7", Disabled: true}, {Id: "room-1", PoolId: "suite"}} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: r}); err != nil {
			t.Fatal(err)
		}
	}
	pooled := &pb.Reservation{UserId: "alice", PoolId: "suite", Start: at(0), End: at(1)}
	calls := []struct {
		name string
		call func() error
		item string
	}{
		{"Reserve", func() error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room-7", 0, 1)})
			return err
		}, "0"},
		{"Reserve with a request id", func() error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("room-7", 0, 1), RequestId: "disabled-1"})
			return err
		}, "0"},
		{"ReserveBatch, second item", func() error {
			_, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{booking("room-2", 0, 1), booking("room-7", 2, 3)}})
			return err
		}, "1"},
		{"ReserveBatch after a pool item", func() error {
			_, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: []*pb.Reservation{pooled, booking("room-7", 2, 3)}})
			return err
		}, "1"},
	}
	for _, tc := range calls {
		st := wantCode(t, tc.call(), codes.FailedPrecondition)
		ei := conflictInfo(st)
		md := ei.GetMetadata()
		if ei.GetReason() != reservation.ReasonResourceDisabled || ei.GetDomain() != service.ErrorDomain ||
			md["resource_id"] != "room-7" || md["item"] != tc.item || len(md) != 2 {
			t.Errorf("%s: ErrorInfo %v, want %s naming resource_id room-7 and item %s, nothing else", tc.name, ei, reservation.ReasonResourceDisabled, tc.item)
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 0 {
		t.Errorf("%d reservations written by refused calls, want 0", n)
	}
}
