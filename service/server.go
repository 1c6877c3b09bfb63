// Package service is the gRPC face of the reservation service: each handler translates the
// request, calls the reservation.Service, and translates the answer or the error back.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
	"reservation/telemetry"
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
	// SeriesMax bounds the occurrences of one ReserveSeries (default reservation.DefaultSeriesMax).
	SeriesMax int
	Logger    *slog.Logger
	// Now is the clock a window is found in the past by; nil means time.Now.
	Now func() time.Time
	// AllowPast admits windows whose end is not after now. By default they are refused
	// (INVALID_ARGUMENT on the window's end), BLOCKED ones excepted: only admins make those
	// (with auth on), and an admin may record that a resource was out of service.
	AllowPast bool
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultMaxDuration   = 366 * 24 * time.Hour
	DefaultMinHold       = time.Second
	DefaultMaxHold       = 24 * time.Hour
	DefaultMaxBatch      = 100
	DefaultMaxFreeWindow = 366 * 24 * time.Hour
)

// Capabilities are what a Server serves, each an interface of package reservation, given
// explicitly: the reservation service, and the parts of the API beside it. They used to be
// found by type assertion on the service at run time, where wrapping the store (for metrics,
// say) silently turned them into UNIMPLEMENTED. A nil one is a part this Server does not serve
// (its RPCs answer UNIMPLEMENTED); Check says which are missing, and a daemon, which serves
// the whole API, refuses to be built without one (server.New).
type Capabilities struct {
	Service reservation.Service
	// Catalogue serves PutResource, GetResource and ListResources.
	Catalogue reservation.Catalogue
	// Series serves ReserveSeries and CancelSeries.
	Series reservation.SeriesBooker
	// History serves History, and names who cancelled a reservation a Get finds gone.
	History reservation.Historian
	// Feed serves Listen.
	Feed reservation.Feed
	// Search serves SearchAvailability.
	Search reservation.Searcher
	// Index, optional, answers the reads whose consistency lets it (readindex.Index); nil:
	// the database answers every read.
	Index reservation.ReadIndex
}

// Store is a service that has every capability but the feed: repo.Store.
type Store interface {
	reservation.Service
	reservation.Catalogue
	reservation.SeriesBooker
	reservation.Historian
	reservation.Searcher
}

// All is every capability of store, with feed for Listen (nil: none). The compiler checks
// that store has them.
func All(store Store, feed reservation.Feed) Capabilities {
	return Capabilities{Service: store, Catalogue: store, Series: store, History: store, Feed: feed, Search: store}
}

// Check names every capability c lacks.
func (c Capabilities) Check() error {
	var missing []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"Service", c.Service != nil}, {"Catalogue", c.Catalogue != nil}, {"Series", c.Series != nil},
		{"History", c.History != nil}, {"Feed", c.Feed != nil}, {"Search", c.Search != nil},
	} {
		if !k.set {
			missing = append(missing, k.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("service capabilities missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Server implements the ReservationService gRPC API.
type Server struct {
	pb.UnimplementedReservationServiceServer
	svc  reservation.Service
	caps Capabilities
	opts Options
	log  *slog.Logger
}

// New returns a Server that serves caps: what it lacks answers UNIMPLEMENTED.
func New(caps Capabilities, opts Options) *Server {
	opts.MaxDuration = reservation.OrDefault(opts.MaxDuration, DefaultMaxDuration)
	opts.MinHold = reservation.OrDefault(opts.MinHold, DefaultMinHold)
	opts.MaxHold = reservation.OrDefault(opts.MaxHold, DefaultMaxHold)
	opts.MaxBatch = reservation.OrDefault(opts.MaxBatch, DefaultMaxBatch)
	opts.MaxFreeWindow = reservation.OrDefault(opts.MaxFreeWindow, DefaultMaxFreeWindow)
	opts.SeriesMax = reservation.OrDefault(opts.SeriesMax, reservation.DefaultSeriesMax)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{svc: caps.Service, caps: caps, opts: opts, log: opts.Logger}
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
	var check fieldCheck
	r := s.newReservation(&check, req.GetReservation(), "reservation.", req.GetHold() != nil)
	b := s.booking(ctx, &check, []*reservation.Reservation{r}, req)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := s.svc.Reserve(ctx, b)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.ReserveResponse{Reservation: toProto(out[0]), ConsistencyToken: token(out)}, nil
}

// ReserveBatch makes all the reservations asked for, or none.
func (s *Server) ReserveBatch(ctx context.Context, req *pb.ReserveBatchRequest) (*pb.ReserveBatchResponse, error) {
	var check fieldCheck
	in := req.GetReservations()
	switch n := len(in); {
	case n == 0:
		check.Add("reservations", "at least one is required")
	case n > s.opts.MaxBatch:
		check.Add("reservations", fmt.Sprintf("at most %d in one batch, got %d", s.opts.MaxBatch, n))
		in = nil // not worth checking each
	}
	rs := make([]*reservation.Reservation, len(in))
	for i, r := range in {
		if err := claim(ctx, r); err != nil {
			return nil, s.status(ctx, err)
		}
		rs[i] = s.newReservation(&check, r, fmt.Sprintf("reservations[%d].", i), req.GetHold() != nil)
	}
	b := s.booking(ctx, &check, rs, req)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := s.svc.Reserve(ctx, b)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.ReserveBatchResponse{Reservations: make([]*pb.Reservation, len(out)), ConsistencyToken: token(out)}
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
func (s *Server) booking(ctx context.Context, check *fieldCheck, rs []*reservation.Reservation, req bookingRequest) reservation.Booking {
	b := reservation.Booking{Reservations: rs, RequestID: req.GetRequestId(), Hold: check.duration("hold", req.GetHold()), Actor: actor(ctx)}
	check.merge("", b.Validate(s.opts.MinHold, s.opts.MaxHold))
	if req.GetHold() != nil && b.Hold == 0 && !check.has("hold") {
		check.Add("hold", fmt.Sprintf("must be between %s and %s, got 0s", s.opts.MinHold, s.opts.MaxHold))
	}
	b.RequestID = scope(ctx, b.RequestID)
	return b
}

// newReservation translates and checks a new reservation; prefix is its path in the request, and
// hold says whether it is asked for as a hold.
func (s *Server) newReservation(check *fieldCheck, in *pb.Reservation, prefix string, hold bool) *reservation.Reservation {
	if in == nil {
		check.Add(prefix[:len(prefix)-1], "is required")
		return nil
	}
	r := &reservation.Reservation{
		UserID:     in.GetUserId(),
		ResourceID: in.GetResourceId(),
		Status:     reservation.Status(in.GetStatus()),
		Start:      check.time(prefix+"start", in.GetStart()),
		End:        check.time(prefix+"end", in.GetEnd()),
		Note:       in.GetNote(),
		PoolID:     in.GetPoolId(), // a pool booking when resource_id is empty; else the resource's pool is recorded
	}
	r.Normalize()
	check.merge(prefix, r.Validate())
	if hold && r.Status != reservation.StatusPending && !check.has(prefix+"status") {
		check.Add(prefix+"status", fmt.Sprintf("a hold is PENDING until confirmed, got %s", r.Status))
	}
	if d := r.End.Sub(r.Start); d > s.opts.MaxDuration && !check.has(prefix+"start") && !check.has(prefix+"end") {
		check.Add(prefix+"end", fmt.Sprintf("reservation lasts %s, longer than the %s allowed", d, s.opts.MaxDuration))
	}
	if !check.has(prefix + "end") {
		s.notPast(check, prefix+"end", r.Status, r.End)
	}
	return r
}

// notPast refuses, as field, the end of a window of a reservation of status st that is not
// after now, unless past windows are allowed or the reservation is BLOCKED.
func (s *Server) notPast(check *fieldCheck, field string, st reservation.Status, end time.Time) {
	if s.opts.AllowPast || st == reservation.StatusBlocked || end.IsZero() {
		return
	}
	if now := reservation.Truncate(s.opts.Now()); !end.After(now) {
		check.Add(field, fmt.Sprintf("must be after now (%s): the window is in the past, got %s", reservation.FormatTime(now), reservation.FormatTime(end)))
	}
}

// firstStart is the instant FreeSlots cuts its windows to start at or after, so that notPast
// admits every booking inside them: now (a booking that starts then ends after it), by the
// clock notPast reads. ok is false when past windows are allowed. (BLOCKED reservations, which
// notPast exempts, may also go before it: FreeSlots answers for the others.)
func (s *Server) firstStart() (now time.Time, ok bool) {
	if s.opts.AllowPast {
		return time.Time{}, false
	}
	return reservation.Truncate(s.opts.Now()), true
}

func (s *Server) Confirm(ctx context.Context, req *pb.ConfirmRequest) (*pb.ConfirmResponse, error) {
	var check fieldCheck
	ref := check.ref(ctx, req)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Confirm(ctx, ref)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.ConfirmResponse{Reservation: toProto(r), ConsistencyToken: token([]*reservation.Reservation{r})}, nil
}

// Update changes the note, or moves the reservation when update_mask names start, end or
// resource_id.
func (s *Server) Update(ctx context.Context, req *pb.UpdateRequest) (*pb.UpdateResponse, error) {
	var check fieldCheck
	ref := check.ref(ctx, req)
	e := check.edit(req)
	e.MaxDuration = s.opts.MaxDuration // a moved window is bounded as a new one is
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	if err := s.movesToPast(ctx, &check, ref, e); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Update(ctx, ref, e)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.UpdateResponse{Reservation: toProto(r), ConsistencyToken: token([]*reservation.Reservation{r})}, nil
}

// movesToPast refuses a move whose new end is not after now, as newReservation refuses such a
// window, on field "end". The reservation's status (a BLOCKED one is exempt) is read only
// then; one the caller may not find is not exempt. (A move that names only the start keeps
// the stored end, which is not checked here.)
func (s *Server) movesToPast(ctx context.Context, check *fieldCheck, ref reservation.Ref, e reservation.Edit) error {
	if e.End.IsZero() {
		return nil
	}
	if s.notPast(check, "end", reservation.StatusUnknown, e.End); check.Err() == nil {
		return nil
	}
	if r, err := s.svc.Get(ctx, ref.ID); err == nil && reservation.Owns(ref.Owner, r.UserID) && r.Status == reservation.StatusBlocked {
		return nil
	}
	return check.Err()
}

func (s *Server) Cancel(ctx context.Context, req *pb.CancelRequest) (*pb.CancelResponse, error) {
	var check fieldCheck
	ref := check.ref(ctx, req)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := s.svc.Cancel(ctx, ref)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.CancelResponse{Reservation: toProto(r), ConsistencyToken: token([]*reservation.Reservation{r})}, nil
}

func (s *Server) Get(ctx context.Context, req *pb.GetRequest) (*pb.GetResponse, error) {
	var check fieldCheck
	id := check.id("id", req.GetId())
	opt := check.readOptions(req.GetRead())
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	pos := dbPosition(s.opts.Now())
	var r *reservation.Reservation
	var err error
	found := false
	if v, ok := s.view(ctx, opt, false); ok {
		// Only a reservation the index holds: one it lacks may be cancelled (the history
		// says by whom) or older than its horizon, which the database tells.
		if r, found = v.Get(id); found {
			pos = v.Position()
		}
	}
	if !found {
		r, err = s.svc.Get(ctx, id)
	}
	setPosition(ctx, pos)
	if err == nil && !reservation.Owns(owner(ctx), r.UserID) {
		err = reservation.NotFound(id)
	} else if err != nil {
		err = s.cancelled(ctx, id, err) // RESERVATION_CANCELLED while the history keeps it
	}
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.GetResponse{Reservation: toProto(r), Position: positionProto(pos)}, nil
}

// Query streams every match, reading the database a batch at a time so that a slow reader
// holds no database connection between batches.
func (s *Server) Query(req *pb.QueryRequest, stream grpc.ServerStreamingServer[pb.Reservation]) error {
	ctx := stream.Context()
	f, check := s.filter(req)
	opt := check.readOptions(req.GetRead())
	if err := check.Err(); err != nil {
		return s.status(ctx, err)
	}
	if err := restrict(ctx, &f); err != nil {
		return s.status(ctx, err)
	}
	f.Limit = queryBatch
	pos := dbPosition(s.opts.Now())
	v, memory := s.view(ctx, opt, false)
	if memory {
		if _, memory = v.Find(reservation.Filter{ResourceID: f.ResourceID, UserID: f.UserID, Start: f.Start, End: f.End, Limit: 1}); memory {
			pos = v.Position()
		}
	}
	if err := stream.SetHeader(metadata.Pairs(ReadPositionHeader, pos.String())); err != nil {
		return err
	}
	for {
		var rs []*reservation.Reservation
		var err error
		if memory {
			rs, memory = v.Find(f)
		}
		if !memory { // the database; from memory, unless the index's horizon moved meanwhile
			rs, err = s.svc.Find(ctx, f)
		}
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
	f, check := s.filter(req)
	if err := restrict(ctx, &f); err != nil {
		return nil, s.status(ctx, err)
	}
	size := check.pageSize(req.GetPageSize())
	opt := check.readOptions(req.GetRead())
	if t := req.GetPageToken(); t != "" {
		if f.After, _ = decodeToken(&f, t); f.After == nil {
			check.Add("page_token", "is malformed or belongs to another filter: pass next_page_token unchanged, with the same filter")
		}
	}
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	f.Limit = size + 1 // one more, to know whether another page follows
	pos := dbPosition(s.opts.Now())
	var rs []*reservation.Reservation
	var err error
	memory := false
	if v, ok := s.view(ctx, opt, false); ok {
		if rs, memory = v.Find(f); memory {
			pos = v.Position()
		}
	}
	if !memory {
		if rs, err = s.svc.Find(ctx, f); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	setPosition(ctx, pos)
	resp := &pb.FilterResponse{Position: positionProto(pos)}
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

// FreeSlots answers when a resource is free inside a window: where a booking could be made
// now (the store cuts to its booking rules; here, unless past windows are allowed, to now).
func (s *Server) FreeSlots(ctx context.Context, req *pb.FreeSlotsRequest) (*pb.FreeSlotsResponse, error) {
	var check fieldCheck
	sq := reservation.SlotQuery{
		ResourceID:  req.GetResourceId(),
		PoolID:      req.GetPoolId(),
		Start:       check.time("start", req.GetStart()),
		End:         check.time("end", req.GetEnd()),
		MinDuration: check.duration("min_duration", req.GetMinDuration()),
	}
	opt := check.readOptions(req.GetRead())
	check.merge("", sq.Validate())
	if d := sq.End.Sub(sq.Start); d > s.opts.MaxFreeWindow && !check.has("start") && !check.has("end") {
		check.Add("end", fmt.Sprintf("window lasts %s, longer than the %s allowed", d, s.opts.MaxFreeWindow))
	}
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	if from, ok := s.firstStart(); ok && from.After(sq.Start) {
		sq.Start = from
	}
	pos := dbPosition(s.opts.Now())
	if sq.Empty() { // a window wholly in the past
		setPosition(ctx, pos)
		return &pb.FreeSlotsResponse{Position: positionProto(pos)}, nil
	}
	var free []reservation.Window
	var err error
	memory := false
	if v, ok := s.view(ctx, opt, true); ok {
		if free, memory = reservation.SlotsFrom(v, sq); memory {
			pos = v.Position()
		}
	}
	if !memory {
		if free, err = s.svc.FreeSlots(ctx, sq); err != nil {
			return nil, s.status(ctx, err)
		}
	}
	setPosition(ctx, pos)
	resp := &pb.FreeSlotsResponse{Free: make([]*pb.TimeWindow, len(free)), Position: positionProto(pos)}
	for i, w := range free {
		// Available 0 is a resource of capacity 1: one place, free.
		resp.Free[i] = &pb.TimeWindow{Start: timestamppb.New(w.Start), End: timestamppb.New(w.End), Available: int32(max(w.Available, 1)), ResourceId: w.ResourceID}
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
	if s.caps.Feed == nil {
		return status.Error(codes.Unimplemented, "the change feed is not enabled on this server")
	}
	f := reservation.ChangeFilter{ResourceID: req.GetResourceId(), UserID: owner(ctx), After: req.AfterSeq}
	var check fieldCheck
	if rc := req.GetResumeCursor(); rc != "" {
		switch c, err := reservation.ParseFeedCursor(rc); {
		case err != nil:
			check.Add("resume_cursor", "not a cursor this service gave out")
		case req.AfterSeq != nil:
			check.Add("resume_cursor", "give either after_seq or resume_cursor, not both")
		default:
			f.Resume = &c
		}
	}
	check.merge("", f.Validate())
	if err := check.Err(); err != nil {
		return s.status(ctx, err)
	}
	sub, err := s.caps.Feed.Subscribe(ctx, f)
	if err != nil {
		return s.status(ctx, err)
	}
	defer sub.Close()
	md := metadata.Pairs(AfterSeqHeader, strconv.FormatUint(sub.After(), 10))
	if c := sub.Position(); c.Seq == 0 || c.Fingerprint != 0 {
		md.Set(AfterCursorHeader, c.String())
	}
	if err := stream.SendHeader(md); err != nil {
		return err
	}
	for {
		cs, err := sub.Next(ctx)
		if err != nil {
			return s.status(ctx, err)
		}
		if err := telemetry.Run(ctx, "feed.deliver", func(context.Context) error {
			for _, c := range cs {
				if err := stream.Send(toListenResponse(c)); err != nil {
					return err
				}
			}
			return nil
		}, attribute.Int("changes", len(cs))); err != nil {
			return err
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

// filter translates and checks the filter of a request; what is wrong is left in check.
func (s *Server) filter(req filterRequest) (f reservation.Filter, check fieldCheck) {
	f = reservation.Filter{
		ResourceID: req.GetResourceId(),
		UserID:     req.GetUserId(),
		Status:     reservation.Status(req.GetStatus()),
		Start:      check.time("start", req.GetStart()),
		End:        check.time("end", req.GetEnd()),
		Desc:       req.GetDesc(),
	}
	check.merge("", f.Validate())
	return f, check
}
