package service

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// The fuzz targets check the translation layer alone: what any input becomes before it
// reaches the store. `make fuzz` runs each for a bounded time; the seeds below and under
// testdata/fuzz run with every `go test`.

func FuzzPageToken(f *testing.F) {
	filter := reservation.Filter{ResourceID: "room", Start: time.Unix(1e9, 0)}
	tok, err := encodeToken(&filter, &reservation.Reservation{ID: "01a204ab-6318-7baf-a7ed-a35f0ef10590", Start: time.Unix(1e9, 5000).UTC()})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{tok, "", "AQ", "////", tok + "A", tok[:len(tok)-1]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, ok := decodeToken(&filter, s)
		if !ok {
			return
		}
		again, err := encodeToken(&filter, &reservation.Reservation{ID: c.ID, Start: c.Start})
		if err != nil {
			t.Fatalf("token %q decodes to %+v, which cannot be encoded: %v", s, c, err)
		}
		if c2, ok := decodeToken(&filter, again); !ok || *c2 != *c {
			t.Fatalf("token %q decodes to %+v; encoded again and decoded, %+v", s, c, c2)
		}
		other := filter
		other.ResourceID = "other"
		if _, ok := decodeToken(&other, s); ok {
			t.Fatalf("token %q is accepted for another filter", s)
		}
	})
}

func FuzzTimestamp(f *testing.F) {
	for _, s := range []struct {
		sec  int64
		nano int32
	}{{0, 0}, {1e9, 999_999_999}, {-62135596800, 0}, {253402300799, 999_999_999}, {253402300800, 0}, {1, -1}, {1, 1e9}} {
		f.Add(s.sec, s.nano)
	}
	f.Fuzz(func(t *testing.T, sec int64, nanos int32) {
		var check fieldCheck
		ts := &timestamppb.Timestamp{Seconds: sec, Nanos: nanos}
		got := check.time("t", ts)
		if err := ts.CheckValid(); err != nil {
			if len(check.Violations) != 1 || !got.IsZero() {
				t.Fatalf("invalid %v: violations %v, time %v", ts, check.Violations, got)
			}
			return
		}
		if len(check.Violations) != 0 || got.Location() != time.UTC || got.Nanosecond()%1000 != 0 || ts.AsTime().Sub(got) >= time.Microsecond || ts.AsTime().Before(got) {
			t.Fatalf("%v became %v (violations %v): want it in UTC, truncated to the microsecond", ts, got, check.Violations)
		}
	})
}

// FuzzReserve feeds arbitrary bytes to Reserve and ReserveBatch: either the request is
// refused as INVALID_ARGUMENT, naming at least one field, and nothing reaches the store, or
// what reaches the store passes every domain check.
func FuzzReserve(f *testing.F) {
	good := &pb.Reservation{UserId: "u", ResourceId: "r", Start: timestamppb.New(time.Unix(2e9, 0)), End: timestamppb.New(time.Unix(2e9+3600, 0))}
	for _, m := range []proto.Message{
		&pb.ReserveRequest{Reservation: good},
		&pb.ReserveRequest{Reservation: good, RequestId: "k", Hold: durationpb.New(time.Minute)},
		&pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u\x00", ResourceId: "x' OR '1'='1", Status: 9}},
		&pb.ReserveBatchRequest{Reservations: []*pb.Reservation{good, good}, Hold: &durationpb.Duration{Nanos: -1}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		_, batch := m.(*pb.ReserveBatchRequest)
		f.Add(b, batch)
	}
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		store := &recorder{}
		s := New(Capabilities{Service: store}, Options{Logger: slog.New(slog.DiscardHandler)})
		var err error
		if batch {
			var req pb.ReserveBatchRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = s.ReserveBatch(context.Background(), &req)
		} else {
			var req pb.ReserveRequest
			if proto.Unmarshal(data, &req) != nil {
				return
			}
			_, err = s.Reserve(context.Background(), &req)
		}
		if err != nil {
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || len(store.got) != 0 || !namesAField(st) {
				t.Fatalf("refused with %v (details %v) after %d store calls: want INVALID_ARGUMENT naming a field, and no store call", st, st.Details(), len(store.got))
			}
			return
		}
		if len(store.got) != 1 {
			t.Fatalf("%d store calls for one accepted request", len(store.got))
		}
		b := store.got[0]
		if err := b.Validate(s.opts.MinHold, s.opts.MaxHold); err != nil {
			t.Fatalf("accepted booking fails its checks: %v", err)
		}
		for _, r := range b.Reservations {
			if err := r.Validate(); err != nil || r.End.Sub(r.Start) > s.opts.MaxDuration {
				t.Fatalf("accepted reservation %+v fails its checks: %v", *r, err)
			}
		}
	})
}

func namesAField(st *status.Status) bool {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return true
		}
	}
	return false
}

// recorder is a reservation.Service that only records what Reserve is given: the fuzz
// targets check translation, not storage.
type recorder struct {
	reservation.Service
	got []reservation.Booking
}

func (r *recorder) Reserve(_ context.Context, b reservation.Booking) ([]*reservation.Reservation, error) {
	r.got = append(r.got, b)
	out := make([]*reservation.Reservation, len(b.Reservations))
	for i, x := range b.Reservations {
		c := *x
		c.ID = "01a204ab-6318-7baf-a7ed-a35f0ef10590"
		out[i] = &c
	}
	return out, nil
}
