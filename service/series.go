package service

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// The series' handlers. A series is checked as a Reserve is: first (as "first."), the hold
// and the request id, and the rule, which the server expands here so that a rule making
// more than SeriesMax occurrences is INVALID_ARGUMENT on rrule before anything is locked. An
// empty time_zone is UTC. A Server given no SeriesBooker answers UNIMPLEMENTED.

func (s *Server) seriesBooker() (reservation.SeriesBooker, error) {
	if s.caps.Series == nil {
		return nil, status.Error(codes.Unimplemented, "this server books no series")
	}
	return s.caps.Series, nil
}

// ReserveSeries makes the occurrences of a recurring booking: all or none, or the free ones.
func (s *Server) ReserveSeries(ctx context.Context, req *pb.ReserveSeriesRequest) (*pb.ReserveSeriesResponse, error) {
	sb, err := s.seriesBooker()
	if err != nil {
		return nil, err
	}
	if err := claim(ctx, req.GetFirst()); err != nil {
		return nil, s.status(ctx, err)
	}
	var check fieldCheck
	first := s.newReservation(&check, req.GetFirst(), "first.", req.GetHold() != nil)
	b := s.booking(ctx, &check, nil, req)
	series := reservation.Series{First: first, Rule: req.GetRrule(), TimeZone: req.GetTimeZone(),
		RequestID: b.RequestID, Hold: b.Hold, Actor: b.Actor, Max: s.opts.SeriesMax}
	switch m := req.GetMode(); m {
	case pb.SeriesMode_SERIES_MODE_UNKNOWN, pb.SeriesMode_SERIES_MODE_ALL_OR_NOTHING:
		series.Mode = reservation.SeriesAllOrNothing
	case pb.SeriesMode_SERIES_MODE_SKIP_CONFLICTS:
		series.Mode = reservation.SeriesSkipConflicts
	default:
		check.Add("mode", fmt.Sprintf("unknown series mode %d", int32(m)))
	}
	if n := len(req.GetExdates()); n > s.opts.SeriesMax {
		check.Add("exdates", fmt.Sprintf("at most %d, got %d", s.opts.SeriesMax, n))
	} else {
		for i, ts := range req.GetExdates() {
			field := fmt.Sprintf("exdates[%d]", i)
			if t := check.time(field, ts); !check.has(field) {
				series.Exdates = append(series.Exdates, t)
			}
		}
	}
	if first != nil && !check.has("first.start") && !check.has("first.end") {
		// The rule, the zone and the number of occurrences (which needs first's window).
		_, err := series.Occurrences() // kept by series: the store books the same expansion
		check.merge("", err)
	} else if _, err := reservation.ParseRule(series.Rule); err != nil {
		check.Add("rrule", err.Error())
	}
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := sb.ReserveSeries(ctx, series)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.ReserveSeriesResponse{SeriesId: out.ID, Reservations: make([]*pb.Reservation, len(out.Reservations)), ConsistencyToken: token(out.Reservations)}
	for i, r := range out.Reservations {
		resp.Reservations[i] = toProto(r)
	}
	for _, sk := range out.Skipped {
		resp.Skipped = append(resp.Skipped, &pb.SkippedOccurrence{
			Window:         &pb.TimeWindow{Start: timestamppb.New(sk.Start), End: timestamppb.New(sk.End)},
			ConflictingIds: sk.Conflicting,
			Reason:         sk.Reason,
		})
	}
	return resp, nil
}

// CancelSeries cancels the occurrences of a series from a start on ("this and following"),
// or all of them, in one transaction.
func (s *Server) CancelSeries(ctx context.Context, req *pb.CancelSeriesRequest) (*pb.CancelSeriesResponse, error) {
	sb, err := s.seriesBooker()
	if err != nil {
		return nil, err
	}
	var check fieldCheck
	id := check.seriesID(req.GetSeriesId())
	from := check.time("from", req.GetFrom())
	check.Time("from", from, false)
	ref := reservation.Ref{Owner: owner(ctx), Actor: actor(ctx), Reason: req.GetReason()}
	check.Note("reason", ref.Reason)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	rs, err := sb.CancelSeries(ctx, id, from, ref)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.CancelSeriesResponse{Reservations: make([]*pb.Reservation, len(rs)), ConsistencyToken: token(rs)}
	for i, r := range rs {
		resp.Reservations[i] = toProto(r)
	}
	return resp, nil
}

// seriesID parses a series id, a UUID, into its canonical form.
func (check *fieldCheck) seriesID(s string) string {
	n := len(check.Violations)
	id := check.id("series_id", s)
	if len(check.Violations) > n && s != "" {
		check.Violations[n].Description = fmt.Sprintf("must be a series id (a UUID), got %q", clip(s))
	}
	return id
}
