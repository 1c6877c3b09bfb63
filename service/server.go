// Package service is the gRPC face of the reservation service: each handler translates the
// request, calls the reservation.Service, and translates the answer or the error back.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// Options tune a Server; the zero value is usable.
type Options struct {
	// MaxDuration bounds the length of one reservation (default 366 days).
	MaxDuration time.Duration
	// MinHold and MaxHold bound a hold (default 1s and 24h).
	MinHold, MaxHold time.Duration
	// MaxBatch bounds the reservations of one ReserveBatch (default 100).
	MaxBatch int
	// MaxFreeWindow bounds the window of a FreeSlots query (default 366 days).
	MaxFreeWindow time.Duration
	// Feed serves Listen; without one, Listen answers UNIMPLEMENTED.
	Feed   reservation.Feed
	Logger *slog.Logger
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultMaxDuration   = 366 * 24 * time.Hour
	DefaultMinHold       = time.Second
	DefaultMaxHold       = 24 * time.Hour
	DefaultMaxBatch      = 100
	DefaultMaxFreeWindow = 366 * 24 * time.Hour
)

// Server implements the ReservationService gRPC API.
type Server struct {
	pb.UnimplementedReservationServiceServer
	svc  reservation.Service
	opts Options
	log  *slog.Logger
}

// New returns a Server that serves svc.
func New(svc reservation.Service, opts Options) *Server {
	if opts.MaxDuration <= 0 {
		opts.MaxDuration = DefaultMaxDuration
	}
	if opts.MinHold <= 0 {
		opts.MinHold = DefaultMinHold
	}
	if opts.MaxHold <= 0 {
		opts.MaxHold = DefaultMaxHold
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxFreeWindow <= 0 {
		opts.MaxFreeWindow = DefaultMaxFreeWindow
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{svc: svc, opts: opts, log: opts.Logger}
}

// Register adds the API to g.
func (s *Server) Register(g grpc.ServiceRegistrar) { pb.RegisterReservationServiceServer(g, s) }

const (
	defaultPageSize = 20
	maxPageSize     = 100
	queryBatch      = 500 // rows Query reads from the database per round
)

func (s *Server) Reserve(ctx context.Context, req *pb.ReserveRequest) (*pb.ReserveResponse, error) {
	if err := claim(ctx, req.GetReservation()); err != nil {
		return nil, s.status(ctx, err)
	}
	var q request
	r := s.reservation(&q, req.GetReservation(), "reservation.", req.GetHold() != nil)
	b := s.booking(ctx, &q, []*reservation.Reservation{r}, req)
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := s.svc.Reserve(ctx, b)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.ReserveResponse{Reservation: toProto(out[0])}, nil
}

// ReserveBatch makes all the reservations asked for, or none.
func (s *Server) ReserveBatch(ctx context.Context, req *pb.ReserveBatchRequest) (*pb.ReserveBatchResponse, error) {
	var q request
	in := req.GetReservations()
	switch n := len(in); {
	case n == 0:
		q.Add("reservations", "at least one is required")
	case n > s.opts.MaxBatch:
		q.Add("reservations", fmt.Sprintf("at most %d in one batch, got %d", s.opts.MaxBatch, n))
		in = nil // not worth checking each
	}
	rs := make([]*reservation.Reservation, len(in))
	for i, r := range in {
		if err := claim(ctx, r); err != nil {
			return nil, s.status(ctx, err)
		}
		rs[i] = s.reservation(&q, r, fmt.Sprintf("reservations[%d].", i), req.GetHold() != nil)
	}
	b := s.booking(ctx, &q, rs, req)
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := s.svc.Reserve(ctx, b)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.ReserveBatchResponse{Reservations: make([]*pb.Reservation, len(out))}
	for i, r := range out {
		resp.Reservations[i] = toProto(r)
	}
	return resp, nil
}

// bookingRequest is what ReserveRequest and ReserveBatchRequest share.
type bookingRequest interface {
	GetRequestId() string
	GetHold() *durationpb.Duration
}

// booking translates and checks the request id and hold of a Reserve call.
func (s *Server) booking(ctx context.Context, q *request, rs []*reservation.Reservation, req bookingRequest) reservation.Booking {
	b := reservation.Booking{Reservations: rs, RequestID: req.GetRequestId(), Hold: q.duration("hold", req.GetHold())}
	q.merge("", b.Validate(s.opts.MinHold, s.opts.MaxHold))
	if req.GetHold() != nil && b.Hold == 0 && !q.has("hold") {
		q.Add("hold", fmt.Sprintf("must be between %s and %s, got 0s", s.opts.MinHold, s.opts.MaxHold))
	}
	b.RequestID = scope(ctx, b.RequestID)
	return b
}

// reservation translates and checks a new reservation; prefix is its path in the request, and
// hold says whether it is asked for as a hold.
func (s *Server) reservation(q *request, in *pb.Reservation, prefix string, hold bool) *reservation.Reservation {
	if in == nil {
		q.Add(prefix[:len(prefix)-1], "is required")
		return nil
	}
	r := &reservation.Reservation{
		UserID:     in.GetUserId(),
		ResourceID: in.GetResourceId(),
		Status:     reservation.Status(in.GetStatus()),
		Start:      q.time(prefix+"start", in.GetStart()),
		End:        q.time(prefix+"end", in.GetEnd()),
		Note:       in.GetNote(),
	}
	r.Normalize()
	q.merge(prefix, r.Validate())
	if hold && r.Status != reservation.StatusPending && !q.has(prefix+"status") {
		q.Add(prefix+"status", fmt.Sprintf("a hold is PENDING until confirmed, got %s", r.Status))
	}
	if d := r.End.Sub(r.Start); d > s.opts.MaxDuration && !q.has(prefix+"start") && !q.has(prefix+"end") {
		q.Add(prefix+"end", fmt.Sprintf("reservation lasts %s, longer than the %s allowed", d, s.opts.MaxDuration))
	}
	return r
}

func (s *Server) Confirm(ctx context.Context, req *pb.ConfirmRequest) (*pb.ConfirmResponse, error) {
	var q request
	ref := q.ref(ctx, req)
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Confirm(ctx, ref)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.ConfirmResponse{Reservation: toProto(r)}, nil
}

func (s *Server) Update(ctx context.Context, req *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	var q request
	ref := q.ref(ctx, req)
	q.Note("note", req.GetNote())
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Update(ctx, ref, req.GetNote())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.UpdateResponse{Reservation: toProto(r)}, nil
}

func (s *Server) Cancel(ctx context.Context, req *pb.CancelRequest) (*pb.CancelResponse, error) {
	var q request
	ref := q.ref(ctx, req)
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Cancel(ctx, ref)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.CancelResponse{Reservation: toProto(r)}, nil
}

func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	var q request
	id := q.id("id", req.GetId())
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Get(ctx, id)
	if o := owner(ctx); err == nil && o != "" && r.UserID != o {
		err = reservation.Errorf(reservation.ENOTFOUND, "reservation %q not found", id)
	}
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.GetResponse{Reservation: toProto(r)}, nil
}

// Query streams every match, reading the database a batch at a time so that a slow reader
// holds no database connection between batches.
func (s *Server) Query(req *pb.QueryRequest, stream grpc.ServerStreamingServer[pb.Reservation]) error {
	ctx := stream.Context()
	f, q := s.filter(req)
	if err := q.Err(); err != nil {
		return s.status(ctx, err)
	}
	if err := restrict(ctx, &f); err != nil {
		return s.status(ctx, err)
	}
	f.Limit = queryBatch
	for {
		rs, err := s.svc.Find(ctx, f)
		if err != nil {
			return s.status(ctx, err)
		}
		for _, r := range rs {
			if err := stream.Send(toProto(r)); err != nil {
				return err
			}
		}
		if len(rs) < f.Limit {
			return nil
		}
		last := rs[len(rs)-1]
		f.After = &reservation.Cursor{Start: last.Start, ID: last.ID}
	}
}

func (s *Server) Filter(ctx context.Context, req *pb.FilterRequest) (*pb.FilterResponse, error) {
	f, q := s.filter(req)
	if err := restrict(ctx, &f); err != nil {
		return nil, s.status(ctx, err)
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		q.Add("page_size", fmt.Sprintf("must not be negative, got %d", size))
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	if t := req.GetPageToken(); t != "" {
		if f.After, _ = decodeToken(&f, t); f.After == nil {
			q.Add("page_token", "is malformed or belongs to another filter: pass next_page_token unchanged, with the same filter")
		}
	}
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	f.Limit = size + 1 // one more, to know whether another page follows
	rs, err := s.svc.Find(ctx, f)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.FilterResponse{}
	if len(rs) > size {
		rs = rs[:size]
		if resp.NextPageToken, err = encodeToken(&f, rs[size-1]); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	resp.Reservations = make([]*pb.Reservation, len(rs))
	for i, r := range rs {
		resp.Reservations[i] = toProto(r)
	}
	return resp, nil
}

// FreeSlots answers when a resource is free inside a window.
func (s *Server) FreeSlots(ctx context.Context, req *pb.FreeSlotsRequest) (*pb.FreeSlotsResponse, error) {
	var q request
	sq := reservation.SlotQuery{
		ResourceID:  req.GetResourceId(),
		Start:       q.time("start", req.GetStart()),
		End:         q.time("end", req.GetEnd()),
		MinDuration: q.duration("min_duration", req.GetMinDuration()),
	}
	q.merge("", sq.Validate())
	if d := sq.End.Sub(sq.Start); d > s.opts.MaxFreeWindow && !q.has("start") && !q.has("end") {
		q.Add("end", fmt.Sprintf("window lasts %s, longer than the %s allowed", d, s.opts.MaxFreeWindow))
	}
	if err := q.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	free, err := s.svc.FreeSlots(ctx, sq)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.FreeSlotsResponse{Free: make([]*pb.TimeWindow, len(free))}
	for i, w := range free {
		resp.Free[i] = &pb.TimeWindow{Start: timestamppb.New(w.Start), End: timestamppb.New(w.End)}
	}
	return resp, nil
}

// AfterSeqHeader is the Listen response header carrying the seq the stream starts after:
// a listener that reads the reservations once it has the header, then applies the stream,
// misses nothing in between.
const AfterSeqHeader = "reservation-after-seq"

// AfterCursorHeader is the same position as AfterSeqHeader, as a cursor to resume from
// (ListenRequest.resume_cursor) before any change arrived.
const AfterCursorHeader = "reservation-after-cursor"

// Listen streams committed changes in seq order, resuming after after_seq when given.
func (s *Server) Listen(req *pb.ListenRequest, stream grpc.ServerStreamingServer[pb.ListenResponse]) error {
	ctx := stream.Context()
	if s.opts.Feed == nil {
		return status.Error(codes.Unimplemented, "the change feed is not enabled on this server")
	}
	f := reservation.ChangeFilter{ResourceID: req.GetResourceId(), UserID: owner(ctx), After: req.AfterSeq}
	var q request
	if rc := req.GetResumeCursor(); rc != "" {
		switch c, err := reservation.ParseFeedCursor(rc); {
		case err != nil:
			q.Add("resume_cursor", "not a cursor this service gave out")
		case req.AfterSeq != nil:
			q.Add("resume_cursor", "give either after_seq or resume_cursor, not both")
		default:
			f.Resume = &c
		}
	}
	q.merge("", f.Validate())
	if err := q.Err(); err != nil {
		return s.status(ctx, err)
	}
	sub, err := s.opts.Feed.Subscribe(ctx, f)
	if err != nil {
		return s.status(ctx, err)
	}
	defer sub.Close()
	md := metadata.Pairs(AfterSeqHeader, strconv.FormatUint(sub.After(), 10))
	if p, ok := sub.(interface{ Position() reservation.FeedCursor }); ok {
		if c := p.Position(); c.Seq == 0 || c.Fingerprint != 0 {
			md.Set(AfterCursorHeader, c.String())
		}
	}
	if err := stream.SendHeader(md); err != nil {
		return err
	}
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return s.status(ctx, err)
		}
		for _, c := range cs {
			if err := stream.Send(toListenResponse(c)); err != nil {
				return err
			}
		}
	}
}

// filterRequest is what QueryRequest and FilterRequest share.
type filterRequest interface {
	GetResourceId() string
	GetUserId() string
	GetStatus() pb.ReservationStatus
	GetStart() *timestamppb.Timestamp
	GetEnd() *timestamppb.Timestamp
	GetDesc() bool
}

// filter translates and checks the filter of a request; what is wrong is left in q.
func (s *Server) filter(req filterRequest) (f reservation.Filter, q request) {
	f = reservation.Filter{
		ResourceID: req.GetResourceId(),
		UserID:     req.GetUserId(),
		Status:     reservation.Status(req.GetStatus()),
		Start:      q.time("start", req.GetStart()),
		End:        q.time("end", req.GetEnd()),
		Desc:       req.GetDesc(),
	}
	q.merge("", f.Validate())
	return f, q
}
