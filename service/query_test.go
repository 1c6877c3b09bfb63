package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// queryAll reads a whole Query stream as ids.
func queryAll(t *testing.T, c pb.ReservationServiceClient, req *pb.QueryRequest) []string {
	t.Helper()
	stream, err := c.Query(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			t.Fatalf("Query(%v): %v", req, err)
		}
		ids = append(ids, r.GetId())
	}
}

// filterAll reads every page of a Filter as ids.
func filterAll(t *testing.T, c pb.ReservationServiceClient, req *pb.FilterRequest) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("Filter never ends")
		}
		resp, err := c.Filter(ctxFor(t), req)
		if err != nil {
			t.Fatalf("Filter(%v): %v", req, err)
		}
		for _, r := range resp.GetReservations() {
			ids = append(ids, r.GetId())
		}
		if resp.GetNextPageToken() == "" {
			return ids
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestQueryAndFilterAgreeWithABruteForceFilter(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var all []*pb.Reservation
	for len(all) < 60 {
		r := booking(fmt.Sprint("res-", rng.IntN(3)), 0, 0)
		from := float64(rng.IntN(48)) / 2
		r.Start, r.End = at(from), at(from+float64(1+rng.IntN(4))/2)
		r.UserId = fmt.Sprint("user-", rng.IntN(3))
		r.Status = pb.ReservationStatus(1 + rng.IntN(3))
		if got, err := c.Reserve(ctxFor(t), &pb.ReserveRequest{Reservation: r}); err == nil {
			all = append(all, got.GetReservation())
		}
	}
	type query struct {
		resource, user string
		status         pb.ReservationStatus
		from, to       float64 // -1: unbounded
		desc           bool
	}
	queries := []query{
		{"", "", 0, -1, -1, false},
		{"", "", 0, -1, -1, true},
		{"res-1", "", 0, -1, -1, false},
		{"", "user-2", 0, 3, 9, true},
		{"res-0", "user-1", 0, 5, -1, false},
		{"res-2", "", pb.ReservationStatus_RESERVATION_STATUS_CONFIRMED, -1, 12, true},
		{"", "", pb.ReservationStatus_RESERVATION_STATUS_BLOCKED, 2.5, 7.5, false},
		{"nobody's", "", 0, -1, -1, false},
	}
	for _, q := range queries {
		var want []*pb.Reservation
		for _, r := range all {
			if (q.resource == "" || r.GetResourceId() == q.resource) && (q.user == "" || r.GetUserId() == q.user) &&
				(q.status == 0 || r.GetStatus() == q.status) &&
				(q.to < 0 || r.GetStart().AsTime().Before(at(q.to).AsTime())) &&
				(q.from < 0 || r.GetEnd().AsTime().After(at(q.from).AsTime())) {
				want = append(want, r)
			}
		}
		slices.SortFunc(want, func(a, b *pb.Reservation) int {
			if c := a.GetStart().AsTime().Compare(b.GetStart().AsTime()); c != 0 {
				return c
			}
			return compare(a.GetId(), b.GetId())
		})
		if q.desc {
			slices.Reverse(want)
		}
		wantIDs := make([]string, len(want))
		for i, r := range want {
			wantIDs[i] = r.GetId()
		}
		qr := &pb.QueryRequest{ResourceId: q.resource, UserId: q.user, Status: q.status, Desc: q.desc}
		fr := &pb.FilterRequest{ResourceId: q.resource, UserId: q.user, Status: q.status, Desc: q.desc, PageSize: 7}
		if q.from >= 0 {
			qr.Start, fr.Start = at(q.from), at(q.from)
		}
		if q.to >= 0 {
			qr.End, fr.End = at(q.to), at(q.to)
		}
		if got := queryAll(t, c, qr); !slices.Equal(got, wantIDs) {
			t.Errorf("Query %+v: got %d ids %v, want %d %v", q, len(got), got, len(wantIDs), wantIDs)
		}
		if got := filterAll(t, c, fr); !slices.Equal(got, wantIDs) {
			t.Errorf("Filter %+v: got %d ids %v, want %d %v", q, len(got), got, len(wantIDs), wantIDs)
		}
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Query reads the database in batches: a result larger than one batch must come whole.
func TestQueryStreamsMoreThanOneBatch(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	rep := startReplica(t, db, nil)
	var batch []*reservation.Reservation
	for i := range 1203 {
		batch = append(batch, &reservation.Reservation{UserID: "u", ResourceID: "long", Start: base.Add(time2(i)), End: base.Add(time2(i + 1))})
	}
	if _, err := rep.store.Reserve(context.Background(), reservation.Book(batch...)); err != nil {
		t.Fatal(err)
	}
	ids := queryAll(t, rep.client, &pb.QueryRequest{ResourceId: "long", Desc: true})
	if len(ids) != 1203 {
		t.Fatalf("Query returned %d, want 1203", len(ids))
	}
	if got := filterAll(t, rep.client, &pb.FilterRequest{ResourceId: "long", PageSize: 1000}); len(got) != 1203 {
		t.Fatalf("Filter returned %d, want 1203 (page size capped at 100)", len(got))
	}
	resp, err := rep.client.Filter(ctxFor(t), &pb.FilterRequest{ResourceId: "long", PageSize: 1000})
	if err != nil || len(resp.GetReservations()) != 100 {
		t.Fatalf("page of %d (%v), want 100: the cap", len(resp.GetReservations()), err)
	}
	resp, err = rep.client.Filter(ctxFor(t), &pb.FilterRequest{ResourceId: "long"})
	if err != nil || len(resp.GetReservations()) != 20 {
		t.Fatalf("page of %d (%v), want the default 20", len(resp.GetReservations()), err)
	}
}

func TestFilterPagesAreStableUnderWrites(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	var ids []string
	for h := range 10 {
		ids = append(ids, reserve(t, c, booking("pool", float64(2*h), float64(2*h+1))).GetId())
	}
	first, err := c.Filter(ctxFor(t), &pb.FilterRequest{ResourceId: "pool", PageSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Between pages: one row before the cursor and one after it are added, one after it removed.
	reserve(t, c, booking("pool", 1, 2))
	added := reserve(t, c, booking("pool", 19, 20)).GetId()
	if _, err := c.Cancel(ctxFor(t), &pb.CancelRequest{Id: ids[5]}); err != nil {
		t.Fatal(err)
	}
	rest := filterAll(t, c, &pb.FilterRequest{ResourceId: "pool", PageSize: 4, PageToken: first.GetNextPageToken()})
	want := append(slices.Clone(ids[4:5]), ids[6:]...)
	want = append(want, added)
	if !slices.Equal(rest, want) {
		t.Errorf("after the first page got %v, want %v", rest, want)
	}
}

func TestFilterRejectsBadRequests(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t)
	for h := range 3 {
		reserve(t, c, booking("a", float64(h), float64(h+1)))
		reserve(t, c, booking("b", float64(h), float64(h+1)))
	}
	first, err := c.Filter(ctxFor(t), &pb.FilterRequest{ResourceId: "a", PageSize: 1})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v, token %q", err, first.GetNextPageToken())
	}
	cases := []struct {
		name  string
		req   *pb.FilterRequest
		field string
	}{
		{"garbage token", &pb.FilterRequest{ResourceId: "a", PageToken: "not a token"}, "page_token"},
		{"truncated token", &pb.FilterRequest{ResourceId: "a", PageToken: first.GetNextPageToken()[:10]}, "page_token"},
		{"token of another filter", &pb.FilterRequest{ResourceId: "b", PageToken: first.GetNextPageToken()}, "page_token"},
		{"token of another order", &pb.FilterRequest{ResourceId: "a", Desc: true, PageToken: first.GetNextPageToken()}, "page_token"},
		{"negative page size", &pb.FilterRequest{PageSize: -1}, "page_size"},
		{"empty window", &pb.FilterRequest{Start: at(1), End: at(1)}, "end"},
		{"bad user", &pb.FilterRequest{UserId: "\x00"}, "user_id"},
		{"unknown status", &pb.FilterRequest{Status: 9}, "status"},
	}
	for _, tc := range cases {
		_, err := c.Filter(ctxFor(t), tc.req)
		if st := wantCode(t, err, codes.InvalidArgument); !slices.Equal(badFields(st), []string{tc.field}) {
			t.Errorf("%s: bad fields %v, want [%s]", tc.name, badFields(st), tc.field)
		}
	}
	_, err = c.Filter(ctxFor(t), &pb.FilterRequest{UserId: "\x00", PageSize: -5, PageToken: "x"})
	if got := badFields(wantCode(t, err, codes.InvalidArgument)); !slices.Equal(got, []string{"user_id", "page_size", "page_token"}) {
		t.Errorf("bad fields %v, want every one named at once", got)
	}
	stream, err := c.Query(ctxFor(t), &pb.QueryRequest{Start: at(2), End: at(1)})
	if err == nil {
		_, err = stream.Recv()
	}
	wantCode(t, err, codes.InvalidArgument)
}

// The original implementation built its filter SQL by pasting ids in; here they are data.
func TestIDsAreDataNotSQL(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	hostile := []string{`x' OR '1'='1`, `x"; DROP TABLE reservations; --`, `\' OR 1=1 #`, `%`, `_`, `a' UNION SELECT * FROM resources --`}
	reserve(t, c, booking("plain", 0, 1))
	for i, id := range hostile {
		r := booking(id, 0, 1)
		r.UserId = id
		if got := reserve(t, c, r); got.GetResourceId() != id || got.GetUserId() != id {
			t.Errorf("stored ids %q/%q, want %q", got.GetResourceId(), got.GetUserId(), id)
		}
		for _, req := range []*pb.QueryRequest{{ResourceId: id}, {UserId: id}} {
			if got := queryAll(t, c, req); len(got) != 1 {
				t.Errorf("hostile id %d %q: query %v matched %d rows, want exactly its own 1", i, id, req, len(got))
			}
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != len(hostile)+1 {
		t.Errorf("%d rows, want %d", n, len(hostile)+1)
	}
}
