package service

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// ReadPositionHeader is the response header of every read (Get, Query, Filter, FreeSlots)
// that names the feed position its answer reflects, as ReadPosition.String writes it:
// seq=N;as_of=RFC3339;from_memory=BOOL. Query, which streams Reservation messages, has no
// other place for it; over HTTP it is Grpc-Metadata-X-Reservation-Read-Position.
const ReadPositionHeader = "x-reservation-read-position"

// readOptions translates and checks a read's consistency; unset is STRONG.
func (check *fieldCheck) readOptions(in *pb.ReadOptions) reservation.ReadOptions {
	var o reservation.ReadOptions
	switch c := in.GetConsistency(); c {
	case pb.Consistency_CONSISTENCY_UNKNOWN, pb.Consistency_CONSISTENCY_STRONG:
		o.Consistency = reservation.ConsistencyStrong
	case pb.Consistency_CONSISTENCY_READ_YOUR_WRITES:
		o.Consistency = reservation.ConsistencyReadYourWrites
	case pb.Consistency_CONSISTENCY_BOUNDED:
		o.Consistency = reservation.ConsistencyBounded
	default:
		check.Add("read.consistency", fmt.Sprintf("unknown consistency %d", int32(c)))
	}
	if t := in.GetConsistencyToken(); t != "" {
		if o.Consistency != reservation.ConsistencyReadYourWrites {
			check.Add("read.consistency_token", "only with consistency READ_YOUR_WRITES")
		} else if tok, err := reservation.ParseConsistencyToken(t); err != nil {
			check.Add("read.consistency_token", err.Error()+": pass a write response's consistency_token unchanged")
		} else {
			o.Token = tok
		}
	}
	o.MaxStaleness = check.duration("read.max_staleness", in.GetMaxStaleness())
	switch {
	case o.Consistency == reservation.ConsistencyBounded && o.MaxStaleness <= 0 && !check.has("read.max_staleness"):
		check.Add("read.max_staleness", fmt.Sprintf("must be positive with consistency BOUNDED, got %s", o.MaxStaleness))
	case o.Consistency != reservation.ConsistencyBounded && in.GetMaxStaleness() != nil:
		check.Add("read.max_staleness", "only with consistency BOUNDED")
	}
	return o
}

// view is the read index's view for opt, when the index may answer; ok false: the database.
func (s *Server) view(ctx context.Context, opt reservation.ReadOptions, catalogue bool) (reservation.ReadView, bool) {
	if s.caps.Index == nil || !opt.Memory() {
		return nil, false
	}
	return s.caps.Index.View(ctx, opt, catalogue)
}

// dbPosition is the position of an answer the database gives to a read that began at began:
// every write committed before it is seen.
func dbPosition(began time.Time) reservation.ReadPosition {
	return reservation.ReadPosition{AsOf: began}
}

func positionProto(p reservation.ReadPosition) *pb.ReadPosition {
	return &pb.ReadPosition{Seq: p.Seq, AsOf: timestampOrNil(p.AsOf), FromMemory: p.FromMemory}
}

// setPosition sends p in the response header of a unary read.
func setPosition(ctx context.Context, p reservation.ReadPosition) {
	_ = grpc.SetHeader(ctx, metadata.Pairs(ReadPositionHeader, p.String())) // only fails when the call has ended
}

// token is the consistency_token of a write that left rs and resources so.
func token(rs []*reservation.Reservation, resources ...*reservation.Resource) string {
	return reservation.TokenOf(rs, resources...).String()
}
