package service_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// offersOf spells a search's offers as "resource start-end available".
func offersOf(os []*pb.AvailabilityOffer) []string {
	var out []string
	for _, o := range os {
		out = append(out, fmt.Sprintf("%s %s-%s %d", o.GetResourceId(), o.GetStart().AsTime().Format("02T15:04"), o.GetEnd().AsTime().Format("02T15:04"), o.GetAvailable()))
	}
	return out
}

// TestSearchAvailability: over gRPC and HTTP, a window by a selector (buffers, capacity,
// places, disabled units counted), a length within a range, and a pool's first unit free.
func TestSearchAvailability(t *testing.T) {
	t.Parallel()
	r := startReplica(t, newDB(t), nil)
	ctx := ctxFor(t)
	for _, u := range []*pb.Resource{
		{Id: "room-1", PoolId: "deluxe", Labels: map[string]string{"view": "sea", "beds": "2"}, BufferAfter: durationpb.New(time.Hour)},
		{Id: "room-2", PoolId: "deluxe", Labels: map[string]string{"view": "sea", "beds": "2"}, Capacity: 2},
		{Id: "room-3", PoolId: "deluxe", Labels: map[string]string{"view": "sea", "beds": "3"}, Disabled: true},
		{Id: "room-4", Labels: map[string]string{"view": "city", "beds": "2"}},
		{Id: "room-5", Labels: map[string]string{"view": "sea", "beds": "1"}},
	} {
		if _, err := r.client.PutResource(ctx, &pb.PutResourceRequest{Resource: u}); err != nil {
			t.Fatal(err)
		}
	}
	reserve(t, r.client, booking("room-1", 0, 2)) // its buffer blocks until 12:00
	reserve(t, r.client, booking("room-2", 1, 3))

	search := func(req *pb.SearchAvailabilityRequest) []string {
		t.Helper()
		resp, err := r.client.SearchAvailability(ctx, req)
		if err != nil {
			t.Fatalf("search %v: %v", req, err)
		}
		return offersOf(resp.GetOffers())
	}
	for _, c := range []struct {
		req  *pb.SearchAvailabilityRequest
		want []string
	}{
		{&pb.SearchAvailabilityRequest{Selector: "view=sea,beds>=2", Start: at(2.5), End: at(4)}, []string{"room-2 01T11:30-01T13:00 1"}},
		{&pb.SearchAvailabilityRequest{Selector: "view=sea,beds>=2", Start: at(2.5), End: at(4), Places: 2}, nil},
		{&pb.SearchAvailabilityRequest{Selector: "view=sea,beds>=2", Start: at(4), End: at(5), Places: 2}, []string{"room-2 01T13:00-01T14:00 2"}},
		{&pb.SearchAvailabilityRequest{Selector: "beds in (2,3)", Start: at(4), End: at(5)}, []string{"room-1 01T13:00-01T14:00 1", "room-2 01T13:00-01T14:00 2", "room-4 01T13:00-01T14:00 1"}},
		// 1 hour between 09:00 and 15:00, on the half hour: each one's earliest.
		{&pb.SearchAvailabilityRequest{Selector: "view=sea", Duration: durationpb.New(time.Hour), RangeStart: at(0), RangeEnd: at(6), Step: durationpb.New(30 * time.Minute)},
			[]string{"room-1 01T12:00-01T13:00 1", "room-2 01T09:00-01T10:00 2", "room-5 01T09:00-01T10:00 1"}},
		{&pb.SearchAvailabilityRequest{PoolId: "deluxe", Start: at(1), End: at(2)}, []string{"room-2 01T10:00-01T11:00 1"}},
		{&pb.SearchAvailabilityRequest{PoolId: "deluxe", Start: at(2), End: at(3)}, []string{"room-2 01T11:00-01T12:00 1"}},
		{&pb.SearchAvailabilityRequest{PoolId: "deluxe", Start: at(3), End: at(4)}, []string{"room-1 01T12:00-01T13:00 1"}},
		{&pb.SearchAvailabilityRequest{PoolId: "deluxe", Start: at(4), End: at(5)}, []string{"room-1 01T13:00-01T14:00 1"}},
	} {
		if got := search(c.req); !slices.Equal(got, c.want) {
			t.Errorf("search %v:\ngot  %v\nwant %v", c.req, got, c.want)
		}
	}
	// Nothing in the past: a window that ended is no offer, and a range that began before now
	// offers windows from now on.
	before := time.Now().Truncate(time.Microsecond)
	if got := search(&pb.SearchAvailabilityRequest{Selector: "beds=1", Start: timestamppb.New(before.Add(-2 * time.Hour)), End: timestamppb.New(before.Add(-time.Hour))}); got != nil {
		t.Errorf("a window in the past: %v", got)
	}
	resp, err := r.client.SearchAvailability(ctx, &pb.SearchAvailabilityRequest{Selector: "beds=1", Duration: durationpb.New(time.Hour),
		RangeStart: timestamppb.New(before.Add(-2 * time.Hour)), RangeEnd: timestamppb.New(before.Add(5 * time.Hour))})
	if err != nil || len(resp.GetOffers()) != 1 || resp.GetOffers()[0].GetStart().AsTime().Before(before) {
		t.Errorf("a range from the past: %v, %v; want room-5 from now (%s) on", resp, err, before)
	}
	// The pool's unit offered is the one Reserve books.
	made, err := r.client.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "alice", PoolId: "deluxe", Start: at(1), End: at(2)}})
	if err != nil || made.GetReservation().GetResourceId() != "room-2" {
		t.Errorf("Reserve of the pool: %v, %v; want room-2, as offered", made, err)
	}

	// Over HTTP, the same answer.
	v := url.Values{"selector": {"beds in (2,3)"}, "start": {"2030-03-01T13:00:00Z"}, "end": {"2030-03-01T14:00:00Z"}, "page_size": {"2"}}
	code, body := r.httpJSON(t, "GET", "/v1/availability:search?"+v.Encode(), nil)
	var answer struct {
		Offers []struct {
			ResourceID string `json:"resource_id"`
			PoolID     string `json:"pool_id"`
			Start      string `json:"start"`
			Available  int    `json:"available"`
		} `json:"offers"`
		NextPageToken string `json:"next_page_token"`
	}
	if err := json.Unmarshal(body, &answer); code != http.StatusOK || err != nil {
		t.Fatalf("GET /v1/availability:search: %d %s", code, body)
	}
	if len(answer.Offers) != 2 || answer.Offers[0].ResourceID != "room-1" || answer.Offers[0].PoolID != "deluxe" || answer.Offers[1].Available != 2 || answer.NextPageToken == "" {
		t.Errorf("GET /v1/availability:search: %s", body)
	}
	v.Set("page_token", answer.NextPageToken)
	code, body = r.httpJSON(t, "GET", "/v1/availability:search?"+v.Encode(), nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"resource_id":"room-4"`) || strings.Contains(string(body), "room-1") {
		t.Errorf("the second page over HTTP: %d %s; want room-4 alone", code, body)
	}
	code, body = r.httpJSON(t, "GET", "/v1/availability:search?selector=view%3D%3D%3D&start=2030-03-01T13:00:00Z&end=2030-03-01T14:00:00Z", nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"selector"`) || !strings.Contains(string(body), "at byte 7") {
		t.Errorf("a malformed selector over HTTP: %d %s; want 400 naming selector at byte 7", code, body)
	}
}

// TestSearchHostileInput: selectors too long, malformed or too many terms, windows and
// ranges past their bounds, a page token of another search: INVALID_ARGUMENT naming the
// field. A selector that matches the whole catalogue over 366 days gets bounded pages that
// together offer every resource once.
func TestSearchHostileInput(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	r := startReplica(t, db, nil)
	ctx := ctxFor(t)
	const n = 1100
	var values []string
	var args []any
	for i := range n {
		values = append(values, "(?, 0, 0, ?, ?)")
		args = append(args, fmt.Sprintf("room-%04d", i), base, fmt.Sprintf(`{"floor":"%d"}`, i%10))
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO resources (id, version, max_span_us, created_at, labels) VALUES "+strings.Join(values, ", "), args...); err != nil {
		t.Fatal(err)
	}
	year := base.Add(366 * 24 * time.Hour)
	window := func(sel string) *pb.SearchAvailabilityRequest {
		return &pb.SearchAvailabilityRequest{Selector: sel, Start: at(0), End: at(24)}
	}
	for _, c := range []struct {
		name  string
		req   *pb.SearchAvailabilityRequest
		field string
	}{
		{"too long", window(strings.Repeat("floor=1,", 200)), "selector"},
		{"too many terms", window(strings.Repeat("floor,", 40) + "floor"), "selector"},
		{"malformed", window("floor in (1,2"), "selector"},
		{"a huge value", window("floor=" + strings.Repeat("9", 300)), "selector"},
		{"empty", window(""), "selector"},
		{"pool and selector", &pb.SearchAvailabilityRequest{Selector: "floor", PoolId: "p", Start: at(0), End: at(1)}, "selector"},
		{"no window", &pb.SearchAvailabilityRequest{Selector: "floor"}, "start"},
		{"window and range", &pb.SearchAvailabilityRequest{Selector: "floor", Start: at(0), End: at(1), Duration: durationpb.New(time.Hour)}, "start"},
		{"range without duration", &pb.SearchAvailabilityRequest{Selector: "floor", RangeStart: at(0), RangeEnd: at(1)}, "duration"},
		{"range over 366 days", &pb.SearchAvailabilityRequest{Selector: "floor", Duration: durationpb.New(time.Hour), RangeStart: at(0), RangeEnd: timestamppb.New(year.Add(time.Hour))}, "range_end"},
		{"window over 366 days", &pb.SearchAvailabilityRequest{Selector: "floor", Start: at(0), End: timestamppb.New(year.Add(time.Hour))}, "end"},
		{"step too fine", &pb.SearchAvailabilityRequest{Selector: "floor", Duration: durationpb.New(time.Hour), RangeStart: at(0), RangeEnd: at(5), Step: durationpb.New(time.Second)}, "step"},
		{"negative places", &pb.SearchAvailabilityRequest{Selector: "floor", Start: at(0), End: at(1), Places: -3}, "places"},
		{"a made-up token", &pb.SearchAvailabilityRequest{Selector: "floor", Start: at(0), End: at(1), PageToken: "AAAA"}, "page_token"},
	} {
		_, err := r.client.SearchAvailability(ctx, c.req)
		st := wantCode(t, err, codes.InvalidArgument)
		if fields := badFields(st); !slices.Contains(fields, c.field) {
			t.Errorf("%s: %v names %v; want %s", c.name, st.Message(), fields, c.field)
		}
	}

	// The whole catalogue for 366 days, in pages of 500 at most (1000 asked), then a token of
	// this search refused for another.
	q := &pb.SearchAvailabilityRequest{Selector: "!absent", Start: at(0), End: timestamppb.New(year), PageSize: 1000}
	seen := map[string]bool{}
	var token string
	for pages := 1; ; pages++ {
		resp, err := r.client.SearchAvailability(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetOffers()) > reservation.MaxSearchPageSize || pages > 3 {
			t.Fatalf("page %d: %d offers", pages, len(resp.GetOffers()))
		}
		for _, o := range resp.GetOffers() {
			if seen[o.GetResourceId()] {
				t.Errorf("%s offered twice", o.GetResourceId())
			}
			seen[o.GetResourceId()] = true
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		token = resp.GetNextPageToken()
		q.PageToken = token
	}
	if len(seen) != n {
		t.Errorf("%d resources offered over the pages, want %d", len(seen), n)
	}
	// The same over a range: each one's earliest day.
	rq := &pb.SearchAvailabilityRequest{Selector: "floor", Duration: durationpb.New(24 * time.Hour), RangeStart: at(0), RangeEnd: timestamppb.New(year)}
	resp, err := r.client.SearchAvailability(ctx, rq)
	if err != nil || len(resp.GetOffers()) != reservation.DefaultSearchPageSize || resp.GetNextPageToken() == "" {
		t.Errorf("a range of 366 days over the catalogue: %d offers, token %q, %v; want a page of %d and a token", len(resp.GetOffers()), resp.GetNextPageToken(), err, reservation.DefaultSearchPageSize)
	}
	other := &pb.SearchAvailabilityRequest{Selector: "floor=1", Start: at(0), End: timestamppb.New(year), PageToken: token}
	_, err = r.client.SearchAvailability(ctx, other)
	if st := wantCode(t, err, codes.InvalidArgument); !slices.Contains(badFields(st), "page_token") {
		t.Errorf("another search's token: %v", st.Message())
	}
}
