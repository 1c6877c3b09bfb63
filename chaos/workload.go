package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "reservation/proto/reservation/v1"
	"reservation/service/feedtest"
)

// History is what the writers were told, kept to be checked against the database afterwards.
type History struct {
	mu        sync.Mutex
	Acked     map[string]string // request id -> reservation id, for each acknowledged Reserve
	Unknown   map[string]bool   // request ids whose Reserve never got a definite answer
	Cancelled map[string]bool   // reservation ids whose Cancel was acknowledged
	// CancelUnknown are reservation ids whose Cancel never got a definite answer (the run
	// ended, or every retry failed): it may have been done.
	CancelUnknown map[string]bool
	Codes         map[string]map[codes.Code]int
	Successes     []time.Time // when each call that succeeded returned
	Failures      []time.Time // when each call that failed transiently returned
	// Feed has every call and its answer, for the comparison of what listeners heard.
	Feed feedtest.Calls
	// OwnReads counts the reads of a write's own reservation with its consistency token
	// (READ_YOUR_WRITES) on a random replica; OwnReadsMissed lists those whose answer did not
	// reflect the write.
	OwnReads, OwnReadsFromMemory, OwnReadsUnanswered int
	OwnReadsMissed                                   []string
}

// readOwn reads reservation id back with a write's token on a random replica and records
// whether the answer reflects the write: the reservation at version at least version, or,
// after a cancel (gone), NOT_FOUND.
func (h *History) readOwn(ctx context.Context, c pb.ReservationServiceClient, id, token string, version int64, gone bool) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.Get(cctx, &pb.GetRequest{Id: id, Read: &pb.ReadOptions{Consistency: pb.Consistency_CONSISTENCY_READ_YOUR_WRITES, ConsistencyToken: token}})
	h.mu.Lock()
	defer h.mu.Unlock()
	var missed string
	switch {
	case gone && status.Code(err) == codes.NotFound:
	case err != nil && (transient(err) || ctx.Err() != nil):
		h.OwnReadsUnanswered++
		return
	case err != nil:
		missed = fmt.Sprintf("%s: %v", id, err)
	case gone:
		missed = fmt.Sprintf("%s: found at version %d after its cancel", id, resp.GetReservation().GetVersion())
	case resp.GetReservation().GetVersion() < version:
		missed = fmt.Sprintf("%s: version %d, the write left %d (from memory %t)", id, resp.GetReservation().GetVersion(), version, resp.GetPosition().GetFromMemory())
	}
	h.OwnReads++
	if resp.GetPosition().GetFromMemory() {
		h.OwnReadsFromMemory++
	}
	if missed != "" {
		h.OwnReadsMissed = append(h.OwnReadsMissed, missed)
	}
}

func newHistory() *History {
	return &History{Acked: map[string]string{}, Unknown: map[string]bool{}, Cancelled: map[string]bool{}, CancelUnknown: map[string]bool{}, Codes: map[string]map[codes.Code]int{}}
}

func (h *History) count(method string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Codes[method] == nil {
		h.Codes[method] = map[codes.Code]int{}
	}
	code := status.Code(err)
	h.Codes[method][code]++
	switch {
	case code == codes.OK:
		h.Successes = append(h.Successes, time.Now())
	case transient(err):
		h.Failures = append(h.Failures, time.Now())
	}
}

// During describes the calls between from and to: how many failed transiently, and the
// longest time in which none succeeded.
func (h *History) During(from, to time.Time) (failed int, stall time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, _ := slices.BinarySearchFunc(h.Failures, from, time.Time.Compare)
	j, _ := slices.BinarySearchFunc(h.Failures, to, time.Time.Compare)
	failed = j - i
	prev := from
	k, _ := slices.BinarySearchFunc(h.Successes, from, time.Time.Compare)
	for ; k < len(h.Successes) && h.Successes[k].Before(to); k++ {
		stall = max(stall, h.Successes[k].Sub(prev))
		prev = h.Successes[k]
	}
	return failed, max(stall, to.Sub(prev))
}

// transient says whether a failed call may have done nothing and should be tried again.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Canceled, codes.Internal, codes.Unknown, codes.ResourceExhausted:
		return true
	}
	return false
}

// Writer books, confirms and cancels on a few hot resources through random replicas, each
// call retried on another replica while it fails transiently. Reserve carries a request id,
// so a retry never books twice.
func Writer(ctx context.Context, id int, replicas []*Replica, h *History, resources int) {
	rng := rand.New(rand.NewPCG(uint64(id), 77))
	base := time.Date(2031, 7, 1, 0, 0, 0, 0, time.UTC)
	var mine []string // acknowledged, not cancelled
	for n := 0; ctx.Err() == nil; n++ {
		client := func() pb.ReservationServiceClient { return replicas[rng.IntN(len(replicas))].Client }
		switch k := rng.IntN(10); {
		case k < 7 || len(mine) == 0:
			slot := rng.IntN(96)
			start := base.Add(time.Duration(slot) * 30 * time.Minute)
			reqID := fmt.Sprintf("w%d-%d", id, n)
			req := &pb.ReserveRequest{RequestId: reqID, Reservation: &pb.Reservation{
				UserId: fmt.Sprint("writer-", id), ResourceId: fmt.Sprint("hot-", rng.IntN(resources)), Note: reqID,
				Start: timestamppb.New(start), End: timestamppb.New(start.Add(time.Duration(1+rng.IntN(4)) * 30 * time.Minute)),
			}}
			resp, err := retry(ctx, h, "Reserve", func(cctx context.Context) (*pb.ReserveResponse, error) { return client().Reserve(cctx, req) })
			h.mu.Lock()
			switch {
			case err == nil:
				h.Acked[reqID] = resp.GetReservation().GetId()
				mine = append(mine, resp.GetReservation().GetId())
				h.Feed.Acked(feedtest.Create, resp.GetReservation())
			case transient(err) || ctx.Err() != nil:
				h.Unknown[reqID] = true
				h.Feed.Unknown(feedtest.Create, "", reqID) // the note is the request id
			default:
				h.Feed.Refused()
			}
			h.mu.Unlock()
			if err == nil {
				h.readOwn(ctx, client(), resp.GetReservation().GetId(), resp.GetConsistencyToken(), resp.GetReservation().GetVersion(), false)
			}
		case k < 8:
			rid := mine[rng.IntN(len(mine))]
			resp, err := retry(ctx, h, "Confirm", func(cctx context.Context) (*pb.ConfirmResponse, error) {
				return client().Confirm(cctx, &pb.ConfirmRequest{Id: rid})
			})
			switch {
			case err == nil:
				h.Feed.Acked(feedtest.Update, resp.GetReservation())
				h.readOwn(ctx, client(), rid, resp.GetConsistencyToken(), resp.GetReservation().GetVersion(), false)
			case transient(err) || ctx.Err() != nil:
				h.Feed.Unknown(feedtest.Update, rid, "")
			default:
				h.Feed.Refused()
			}
		default:
			i := rng.IntN(len(mine))
			rid := mine[i]
			tries := 0
			resp, err := retry(ctx, h, "Cancel", func(cctx context.Context) (*pb.CancelResponse, error) {
				tries++
				return client().Cancel(cctx, &pb.CancelRequest{Id: rid})
			})
			switch {
			case err == nil:
				h.Feed.Acked(feedtest.Delete, resp.GetReservation())
				h.readOwn(ctx, client(), rid, resp.GetConsistencyToken(), resp.GetReservation().GetVersion(), true)
			case transient(err) || ctx.Err() != nil || (status.Code(err) == codes.NotFound && tries > 1):
				h.Feed.Unknown(feedtest.Delete, rid, "")
			default:
				h.Feed.Refused()
			}
			// NOT_FOUND after a transient failure: that earlier attempt did cancel it.
			switch {
			case err == nil || (status.Code(err) == codes.NotFound && tries > 1):
				h.mu.Lock()
				h.Cancelled[rid] = true
				h.mu.Unlock()
				mine = slices.Delete(mine, i, i+1)
			case transient(err):
				h.mu.Lock()
				h.CancelUnknown[rid] = true
				h.mu.Unlock()
			}
		}
	}
}

// callTimeout bounds each call; a server may still finish a call its client gave up on
// until this long after the call began.
const callTimeout = 3 * time.Second

// retry calls f until it succeeds, fails for good, or has failed transiently 20 times.
func retry[T any](ctx context.Context, h *History, method string, f func(context.Context) (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := f(cctx)
		cancel()
		if ctx.Err() != nil {
			return out, err // the run is over; this call is not counted
		}
		h.count(method, err)
		if !transient(err) || attempt == 19 {
			return out, err
		}
		time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
	}
}

// Listener tails the feed from the start, reconnecting to a random replica after every
// failure with the last seq it got, until its context ends.
type Listener struct {
	mu   sync.Mutex
	got  []*pb.ListenResponse
	ends map[codes.Code]int // how its streams ended before the run was over
}

// NewListener returns a listener to Run.
func NewListener() *Listener { return &Listener{ends: map[codes.Code]int{}} }

// Got returns the changes received, in the order received, and how streams ended.
func (l *Listener) Got() ([]*pb.ListenResponse, map[codes.Code]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got), l.ends
}

// Last is the seq of the newest change received.
func (l *Listener) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) == 0 {
		return 0
	}
	return l.got[len(l.got)-1].GetSeq()
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context, replicas []*Replica, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 5))
	for ctx.Err() == nil {
		last := l.Last()
		stream, err := replicas[rng.IntN(len(replicas))].Client.Listen(ctx, &pb.ListenRequest{AfterSeq: &last})
		for err == nil {
			var m *pb.ListenResponse
			if m, err = stream.Recv(); err == nil {
				l.mu.Lock()
				l.got = append(l.got, m)
				l.mu.Unlock()
			}
		}
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.ends[status.Code(err)]++
		l.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}
