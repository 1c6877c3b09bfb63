package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
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

func seriesFirst(resource string, start time.Time, length time.Duration) *pb.Reservation {
	return &pb.Reservation{UserId: "alice", ResourceId: resource, Start: timestamppb.New(start), End: timestamppb.New(start.Add(length))}
}

// TestSeriesKeepsLocalTimeAcrossDST: a weekly 09:00 meeting over the spring and autumn DST
// changes of Europe/Paris and America/New_York stays 09:00 local, end to end: the stored
// reservations' UTC start moves by the hour the offset changes.
func TestSeriesKeepsLocalTimeAcrossDST(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	for _, z := range []struct {
		zone, start string // a local 09:00 three weeks before the change
	}{
		{"Europe/Paris", "2030-03-11"}, // summer time from Sunday 31 March 2030
		{"Europe/Paris", "2030-10-07"}, // winter time from Sunday 27 October 2030
		{"America/New_York", "2030-02-21"},
		{"America/New_York", "2030-10-17"},
	} {
		loc, err := time.LoadLocation(z.zone)
		if err != nil {
			t.Fatal(err)
		}
		day, _ := time.ParseInLocation("2006-01-02 15:04", z.start+" 09:00", loc)
		resp, err := c.ReserveSeries(ctx, &pb.ReserveSeriesRequest{
			First: seriesFirst("room-"+z.zone+z.start, day, time.Hour), Rrule: "FREQ=WEEKLY;COUNT=6", TimeZone: z.zone,
		})
		if err != nil {
			t.Fatalf("%s: %v", z.zone, err)
		}
		var stored []time.Time
		if err := db.Select(&stored, "SELECT start_at FROM reservations WHERE series_id = ? ORDER BY start_at", resp.GetSeriesId()); err != nil {
			t.Fatal(err)
		}
		offsets := map[int]bool{}
		for i, s := range stored {
			local := s.In(loc)
			_, off := local.Zone()
			offsets[off] = true
			if local.Hour() != 9 || local.Minute() != 0 || local.Weekday() != day.Weekday() {
				t.Errorf("%s from %s: occurrence %d at %s local, want 09:00 on %s", z.zone, z.start, i, local.Format(time.RFC3339), day.Weekday())
			}
			if got := resp.GetReservations()[i].GetStart().AsTime(); !got.Equal(s) || resp.GetReservations()[i].GetSeriesId() != resp.GetSeriesId() {
				t.Errorf("answer %d: %v, stored %v", i, got, s)
			}
		}
		if len(stored) != 6 || len(offsets) != 2 {
			t.Errorf("%s from %s: %d stored, %d UTC offsets; want 6 and 2", z.zone, z.start, len(stored), len(offsets))
		}
	}
}

// TestSeriesModes: ALL_OR_NOTHING over one taken week writes nothing; SKIP_CONFLICTS writes
// the rest and names the skipped one and what is in its way; the HTTP routes work.
func TestSeriesModes(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	r := startReplica(t, db, nil)
	c, ctx := r.client, ctxFor(t)
	first := base.Add(24 * time.Hour)
	taken := reserve(t, c, &pb.Reservation{UserId: "bob", ResourceId: "room-1", Start: timestamppb.New(first.AddDate(0, 0, 14)), End: timestamppb.New(first.AddDate(0, 0, 14).Add(30 * time.Minute))})
	req := &pb.ReserveSeriesRequest{First: seriesFirst("room-1", first, time.Hour), Rrule: "FREQ=WEEKLY;COUNT=5", TimeZone: "Europe/Paris"}
	_, err := c.ReserveSeries(ctx, req)
	st := wantCode(t, err, codes.FailedPrecondition)
	if info := conflictInfo(st); info.GetReason() != service.ConflictReason || info.GetMetadata()["conflict_ids"] != taken.GetId() || info.GetMetadata()["conflict_0_item"] != "2" {
		t.Errorf("conflict info %v", info)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 1 {
		t.Errorf("%d reservations after a refused series, want 1", n)
	}

	req.Mode = pb.SeriesMode_SERIES_MODE_SKIP_CONFLICTS
	resp, err := c.ReserveSeries(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetReservations()) != 4 || len(resp.GetSkipped()) != 1 {
		t.Fatalf("made %d, skipped %d; want 4 and 1", len(resp.GetReservations()), len(resp.GetSkipped()))
	}
	sk := resp.GetSkipped()[0]
	if !sk.GetWindow().GetStart().AsTime().Equal(first.AddDate(0, 0, 14)) || !slices.Equal(sk.GetConflictingIds(), []string{taken.GetId()}) || sk.GetReason() != "RESERVATION_CONFLICT" {
		t.Errorf("skipped %v", sk)
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations WHERE series_id = ?", resp.GetSeriesId()); n != 4 {
		t.Errorf("%d stored in the series, want 4", n)
	}

	// Through the gateway: POST /v1/reservations:series, then /v1/series/{id}:cancel.
	code, body := r.httpJSON(t, http.MethodPost, "/v1/reservations:series", map[string]any{
		"first": map[string]any{"userId": "carol", "resourceId": "room-2", "start": first.Format(time.RFC3339), "end": first.Add(time.Hour).Format(time.RFC3339)},
		"rrule": "FREQ=DAILY;COUNT=3", "timeZone": "UTC", "mode": "SERIES_MODE_SKIP_CONFLICTS",
	})
	var made struct {
		SeriesID     string `json:"series_id"`
		Reservations []struct {
			ID string `json:"id"`
		} `json:"reservations"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &made) != nil || len(made.Reservations) != 3 {
		t.Fatalf("POST /v1/reservations:series: %d %s", code, body)
	}
	code, body = r.httpJSON(t, http.MethodPost, "/v1/series/"+made.SeriesID+":cancel", map[string]any{"reason": "no longer needed"})
	if code != http.StatusOK || strings.Count(string(body), `"id"`) != 3 {
		t.Errorf("POST /v1/series/{id}:cancel: %d %s", code, body)
	}
	code, body = r.httpJSON(t, http.MethodPost, "/v1/reservations:series", map[string]any{"first": map[string]any{"userId": "carol", "resourceId": "room-2"}, "rrule": "FREQ=YEARLY"})
	if code != http.StatusBadRequest || !strings.Contains(string(body), "rrule") {
		t.Errorf("a bad series over HTTP: %d %s", code, body)
	}
}

// TestCancelSeriesThisAndFollowing: from the third occurrence, the first two remain.
func TestCancelSeriesThisAndFollowing(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	resp, err := c.ReserveSeries(ctx, &pb.ReserveSeriesRequest{First: seriesFirst("room-1", base, time.Hour), Rrule: "FREQ=WEEKLY;COUNT=6"})
	if err != nil {
		t.Fatal(err)
	}
	rs := resp.GetReservations()
	out, err := c.CancelSeries(ctx, &pb.CancelSeriesRequest{SeriesId: resp.GetSeriesId(), From: rs[2].GetStart(), Reason: "room closes"})
	if err != nil {
		t.Fatal(err)
	}
	var cancelled []string
	for _, r := range out.GetReservations() {
		cancelled = append(cancelled, r.GetId())
	}
	if want := []string{rs[2].GetId(), rs[3].GetId(), rs[4].GetId(), rs[5].GetId()}; !slices.Equal(cancelled, want) {
		t.Errorf("cancelled %v, want %v", cancelled, want)
	}
	var left []string
	if err := db.Select(&left, "SELECT id FROM reservations WHERE series_id = ? ORDER BY start_at", resp.GetSeriesId()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{rs[0].GetId(), rs[1].GetId()}) {
		t.Errorf("left %v, want the first two", left)
	}
	// The freed weeks take a new booking.
	reserve(t, c, &pb.Reservation{UserId: "bob", ResourceId: "room-1", Start: rs[3].GetStart(), End: rs[3].GetEnd()})
	_, err = c.CancelSeries(ctx, &pb.CancelSeriesRequest{SeriesId: resp.GetSeriesId(), From: rs[2].GetStart()})
	if st := wantCode(t, err, codes.NotFound); !strings.Contains(st.Message(), resp.GetSeriesId()) {
		t.Errorf("NOT_FOUND %q does not name the series", st.Message())
	}
}

// TestSeriesBadRequests: each bad field is named; more than --series-max occurrences is
// INVALID_ARGUMENT on rrule.
func TestSeriesBadRequests(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	first := seriesFirst("room-1", base, time.Hour)
	for _, c2 := range []struct {
		req    *pb.ReserveSeriesRequest
		fields []string
	}{
		{&pb.ReserveSeriesRequest{First: first, Rrule: fmt.Sprintf("FREQ=DAILY;COUNT=%d", reservation.DefaultSeriesMax+1)}, []string{"rrule"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY"}, []string{"rrule"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;BYDAY=1MO;COUNT=2"}, []string{"rrule"}},
		// Never again after first (a fifth Monday that is the first of its month): refused after
		// about 10 years of days, not after every day to the year 9999.
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1;COUNT=2"}, []string{"rrule"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;COUNT=2", TimeZone: "Europe/Atlantis"}, []string{"time_zone"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;COUNT=2", Mode: 7}, []string{"mode"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;COUNT=2", Exdates: []*timestamppb.Timestamp{{Seconds: -1e12}}}, []string{"exdates[0]"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;COUNT=1", Exdates: []*timestamppb.Timestamp{first.GetStart()}}, []string{"exdates"}},
		{&pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=WEEKLY;COUNT=2", Hold: durationpb.New(time.Hour), RequestId: strings.Repeat("x", 65)}, []string{"request_id"}},
		{&pb.ReserveSeriesRequest{First: &pb.Reservation{UserId: "alice", ResourceId: "room-1", Start: first.GetStart()}, Rrule: "FREQ=DAILY;COUNT=2"}, []string{"first.end"}},
		{&pb.ReserveSeriesRequest{Rrule: "FREQ=HOURLY"}, []string{"first", "rrule"}},
	} {
		_, err := c.ReserveSeries(ctx, c2.req)
		st := wantCode(t, err, codes.InvalidArgument)
		if got := badFields(st); !slices.Equal(got, c2.fields) {
			t.Errorf("%v: fields %v, want %v (%s)", c2.req, got, c2.fields, st.Message())
		}
	}
	if _, err := c.ReserveSeries(ctx, &pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=DAILY;COUNT=500"}); err != nil {
		t.Errorf("500 occurrences, the most allowed: %v", err)
	}
	for _, req := range []*pb.CancelSeriesRequest{{SeriesId: "nope"}, {}, {SeriesId: "0190b5d0-0000-7000-8000-000000000000", Reason: "bad\x00"}} {
		_, err := c.CancelSeries(ctx, req)
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err := c.CancelSeries(ctx, &pb.CancelSeriesRequest{SeriesId: "0190b5d0-0000-7000-8000-000000000000"})
	wantCode(t, err, codes.NotFound)
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 500 {
		t.Errorf("%d stored, want the 500 of the one good series", n)
	}
}

// TestSeriesOnAPoolAndRetry: occurrences of a pool each get a unit (another where the first is
// busy); a retry with the request id gets the same series and writes nothing.
func TestSeriesOnAPoolAndRetry(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	ctx := ctxFor(t)
	for _, id := range []string{"bay-1", "bay-2"} {
		if _, err := c.PutResource(ctx, &pb.PutResourceRequest{Resource: &pb.Resource{Id: id, PoolId: "bays"}}); err != nil {
			t.Fatal(err)
		}
	}
	busy := reserve(t, c, &pb.Reservation{UserId: "bob", ResourceId: "bay-1", Start: timestamppb.New(base.AddDate(0, 0, 1)), End: timestamppb.New(base.AddDate(0, 0, 1).Add(time.Hour))})
	req := &pb.ReserveSeriesRequest{First: &pb.Reservation{UserId: "alice", PoolId: "bays", Start: timestamppb.New(base), End: timestamppb.New(base.Add(time.Hour))},
		Rrule: "FREQ=DAILY;COUNT=3", RequestId: "series-1", Hold: durationpb.New(time.Hour)}
	resp, err := c.ReserveSeries(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, r := range resp.GetReservations() {
		units = append(units, r.GetResourceId())
		if r.GetStatus() != pb.ReservationStatus_RESERVATION_STATUS_PENDING || r.GetExpiresAt() == nil || r.GetPoolId() != "bays" {
			t.Errorf("occurrence %v: want a PENDING hold of the pool", r)
		}
	}
	if !slices.Equal(units, []string{"bay-1", "bay-2", "bay-1"}) {
		t.Errorf("units %v, want bay-2 on day 2 (%s holds bay-1)", units, busy.GetId())
	}
	again, err := c.ReserveSeries(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetSeriesId() != resp.GetSeriesId() || again.GetReservations()[2].GetId() != resp.GetReservations()[2].GetId() {
		t.Errorf("retry got series %s, want %s", again.GetSeriesId(), resp.GetSeriesId())
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n != 4 {
		t.Errorf("%d stored, want 4: the retry wrote nothing", n)
	}
}

// TestSeriesAuth: a user books a series for themselves; another user's series is NOT_FOUND
// to them; an admin cancels it.
func TestSeriesAuth(t *testing.T) {
	t.Parallel()
	store := repo.New(newDB(t), repo.Options{Logger: quiet})
	api := service.New(service.All(store, nil), service.Options{Logger: quiet})
	ann := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "ann"})
	bob := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "bob"})
	admin := reservation.WithCaller(context.Background(), reservation.Caller{UserID: "root", Admin: true})
	first := seriesFirst("room-1", base, time.Hour)
	first.UserId = ""
	resp, err := api.ReserveSeries(ann, &pb.ReserveSeriesRequest{First: first, Rrule: "FREQ=DAILY;COUNT=2"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetReservations()[1].GetUserId() != "ann" {
		t.Errorf("a user's series is booked for %q", resp.GetReservations()[1].GetUserId())
	}
	_, err = api.ReserveSeries(ann, &pb.ReserveSeriesRequest{First: seriesFirst("room-2", base, time.Hour), Rrule: "FREQ=DAILY;COUNT=2"})
	wantCode(t, err, codes.PermissionDenied)
	_, err = api.CancelSeries(bob, &pb.CancelSeriesRequest{SeriesId: resp.GetSeriesId()})
	wantCode(t, err, codes.NotFound)
	out, err := api.CancelSeries(admin, &pb.CancelSeriesRequest{SeriesId: resp.GetSeriesId()})
	if err != nil || len(out.GetReservations()) != 2 {
		t.Errorf("an admin cancels: %v, %v", out, err)
	}
}

// TestConcurrentSeriesOverReplicas: series in both modes on shared resources, from many
// goroutines over three replicas, with Redis up and unreachable: no two reservations overlap.
func TestConcurrentSeriesOverReplicas(t *testing.T) {
	t.Parallel()
	for name, newLocker := range concurrentLockers() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db, dsn := repotest.NewDB(t)
			replicas := replicasOn(t, dsn, 3, func() reservation.Locker { return newLocker(t, "series:"+name+":") })
			ctx := ctxFor(t)
			var wg sync.WaitGroup
			for g := range 12 {
				wg.Go(func() {
					for i := range 3 {
						start := base.Add(time.Duration((g+i)%4) * 30 * time.Minute)
						req := &pb.ReserveSeriesRequest{First: seriesFirst([]string{"room-a", "room-b"}[(g+i)%2], start, time.Hour),
							Rrule: "FREQ=DAILY;COUNT=10", TimeZone: "Europe/Paris", Mode: pb.SeriesMode(1 + (g+i)%2)}
						_, err := replicas[g%3].client.ReserveSeries(ctx, req)
						// Refused for a conflict (ALL_OR_NOTHING), or aborted under contention.
						if code := status.Code(err); err != nil && code != codes.FailedPrecondition && code != codes.Aborted {
							t.Errorf("series: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			if n := overlaps(t, db); n != 0 {
				t.Errorf("%d overlapping pairs", n)
			}
			if n := count(t, db, "SELECT COUNT(*) FROM reservations"); n == 0 {
				t.Error("nothing booked")
			}
		})
	}
}
