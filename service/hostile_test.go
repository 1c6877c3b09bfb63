package service_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/service/feedtest"
)

// TestHostileRequests sends what an attacker or a broken client would, to every RPC: each is
// INVALID_ARGUMENT naming the field, and nothing is written.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	c, db := newClient(t)
	huge := strings.Repeat("x", 1<<20)
	sql := "x' OR '1'='1"
	far := &timestamppb.Timestamp{Seconds: 1 << 40}
	badNanos := &timestamppb.Timestamp{Seconds: base.Unix(), Nanos: 1e9}
	withNote := func(note string) *pb.Reservation { r := booking("r", 0, 1); r.Note = note; return r }
	cases := []struct {
		name  string
		call  func(context.Context) error
		field string
	}{
		{"1 MB user id", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: huge, ResourceId: "r", Start: at(0), End: at(1)}})
			return err
		}, "reservation.user_id"},
		{"1 MB note", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: withNote(huge)})
			return err
		}, "reservation.note"},
		{"1 MB request id", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("r", 0, 1), RequestId: huge})
			return err
		}, "request_id"},
		{"NUL in request id", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("r", 0, 1), RequestId: "a\x00b"})
			return err
		}, "request_id"},
		{"timestamp 2^40 seconds", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u", ResourceId: "r", Start: at(0), End: far}})
			return err
		}, "reservation.end"},
		{"nanos of a whole second", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: &pb.Reservation{UserId: "u", ResourceId: "r", Start: badNanos, End: at(1)}})
			return err
		}, "reservation.start"},
		{"hold of 10,000 years", func(ctx context.Context) error {
			_, err := c.Reserve(ctx, &pb.ReserveRequest{Reservation: booking("r", 0, 1), Hold: &durationpb.Duration{Seconds: 315576000000}})
			return err
		}, "hold"},
		{"SQL in a reservation id (Get)", func(ctx context.Context) error {
			_, err := c.Get(ctx, &pb.GetRequest{Id: sql})
			return err
		}, "id"},
		{"SQL in a reservation id (Confirm)", func(ctx context.Context) error {
			_, err := c.Confirm(ctx, &pb.ConfirmRequest{Id: sql})
			return err
		}, "id"},
		{"UNION in a reservation id (Cancel)", func(ctx context.Context) error {
			_, err := c.Cancel(ctx, &pb.CancelRequest{Id: "1 UNION SELECT * FROM reservations"})
			return err
		}, "id"},
		{"1 MB reservation id (Update)", func(ctx context.Context) error {
			_, err := c.Update(ctx, &pb.UpdateRequest{Id: huge, Note: "n"})
			return err
		}, "id"},
		{"SQL in a page token", func(ctx context.Context) error {
			_, err := c.Filter(ctx, &pb.FilterRequest{PageToken: sql})
			return err
		}, "page_token"},
		{"unknown status in a filter", func(ctx context.Context) error {
			_, err := c.Filter(ctx, &pb.FilterRequest{Status: 99})
			return err
		}, "status"},
		{"negative page size", func(ctx context.Context) error {
			_, err := c.Filter(ctx, &pb.FilterRequest{PageSize: -1 << 31})
			return err
		}, "page_size"},
		{"query window out of range", func(ctx context.Context) error {
			s, err := c.Query(ctx, &pb.QueryRequest{Start: at(0), End: far})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "end"},
		{"free slots over ten years", func(ctx context.Context) error {
			_, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: "r", Start: at(0), End: at(10 * 366 * 24)})
			return err
		}, "end"},
		{"free slots with bad nanos", func(ctx context.Context) error {
			_, err := c.FreeSlots(ctx, &pb.FreeSlotsRequest{ResourceId: "r", Start: badNanos, End: at(1)})
			return err
		}, "start"},
		{"1 MB resource id to listen to", func(ctx context.Context) error {
			s, err := c.Listen(ctx, &pb.ListenRequest{ResourceId: huge})
			if err == nil {
				_, err = s.Recv()
			}
			return err
		}, "resource_id"},
		{"a batch of 10,000", func(ctx context.Context) error {
			many := make([]*pb.Reservation, 10000)
			for i := range many {
				many[i] = booking("r", float64(i), float64(i+1))
			}
			_, err := c.ReserveBatch(ctx, &pb.ReserveBatchRequest{Reservations: many})
			return err
		}, "reservations"},
	}
	for _, tc := range cases {
		st := wantCode(t, tc.call(ctxFor(t)), codes.InvalidArgument)
		if got := strings.Join(badFields(st), ","); got != tc.field {
			t.Errorf("%s: fields %q, want %q", tc.name, got, tc.field)
		}
		if len(st.Message()) > 2000 {
			t.Errorf("%s: the error echoes %d bytes back", tc.name, len(st.Message()))
		}
	}
	if n := count(t, db, "SELECT COUNT(*) FROM reservations") + count(t, db, "SELECT COUNT(*) FROM reservation_changes"); n != 0 {
		t.Fatalf("hostile requests wrote %d rows", n)
	}
	reserve(t, c, booking("r", 0, 1)) // and the server still serves
}

// TestThousandListeners holds 1,000 Listen streams open while writers commit: every stream
// gets every change, memory stays bounded, and once they disconnect no goroutine is left
// behind.
func TestThousandListeners(t *testing.T) {
	r := startReplica(t, newDB(t), nil)
	following(t, r)
	conns := make([]pb.ReservationServiceClient, 8)
	for i := range conns {
		conns[i] = pb.NewReservationServiceClient(dial(t, r.addr))
		if _, err := conns[i].Filter(ctxFor(t), &pb.FilterRequest{}); err != nil { // connect now: the baseline counts the connections
			t.Fatal(err)
		}
	}
	const listeners, changes = 1000, 50 // changes: what one round of writes makes
	var calls feedtest.Calls            // the second round's, which the listeners hear
	write := func(round int) {
		var wg sync.WaitGroup
		for w := range 5 {
			wg.Go(func() {
				for i := range 10 {
					h := float64(round*1000 + w*100 + i)
					made := reserve(t, r.client, booking("room", h, h+1))
					if round == 1 {
						calls.Acked(feedtest.Create, made)
					}
				}
			})
		}
		wg.Wait()
	}
	write(0) // the database pool grows to the writers' needs before the baseline
	waitUntil(t, "the first changes to be sequenced", func() bool { return r.feed.Stats().Head == changes })
	runtime.GC()
	goroutines := runtime.NumGoroutine()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := make([]grpc.ServerStreamingClient[pb.ListenResponse], listeners)
	for i := range streams {
		s, err := conns[i%len(conns)].Listen(ctx, &pb.ListenRequest{AfterSeq: proto.Uint64(changes)})
		if err == nil {
			_, err = s.Header()
		}
		if err != nil {
			t.Fatalf("listener %d: %v", i, err)
		}
		streams[i] = s
	}
	write(1)
	var wg sync.WaitGroup
	errs := make(chan error, listeners)
	heard := make([][]*pb.ListenResponse, listeners)
	for i, s := range streams {
		wg.Go(func() {
			for want := uint64(changes + 1); want <= 2*changes; want++ {
				m, err := s.Recv()
				if err == nil && m.Seq != want {
					err = status.Errorf(codes.Internal, "got seq %d, want %d", m.Seq, want)
				}
				if err != nil {
					errs <- err
					return
				}
				heard[i] = append(heard[i], m)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Change by change, every listener (subscribed after the first round's seqs) heard the
	// second round's calls as they were answered.
	for _, d := range calls.Check(changes, heard...) {
		t.Error("feed unlike the calls: " + d)
	}
	var during runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&during)
	inUse := func(m *runtime.MemStats) int64 { return int64(m.HeapInuse + m.StackInuse) }
	grown := inUse(&during) - inUse(&before)
	t.Logf("heap and stacks in use grew by %d KB with %d listeners (client and server sides of each stream), %d goroutines more",
		grown>>10, listeners, runtime.NumGoroutine()-goroutines)
	if grown > 200<<20 {
		t.Errorf("memory in use grew by %d MB for %d listeners", grown>>20, listeners)
	}
	if n := r.feed.Stats().Subscribers - ownSubscriptions; n != listeners {
		t.Errorf("%d subscriptions open, want %d", n, listeners)
	}

	cancel()
	waitUntil(t, "every subscription to close", func() bool { return r.feed.Stats().Subscribers == ownSubscriptions })
	deadline := time.Now().Add(20 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		n := runtime.NumGoroutine()
		if n <= goroutines+2 && !strings.Contains(stacks, "(*Server).Listen") && !strings.Contains(stacks, "(*clientStream)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the listeners left, %d before:\n%s", n, goroutines, stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
