package service

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// SearchAvailability answers which resources (or which unit of a pool) could be booked for a
// window, or offer a window of a length within a range, now (reservation.Search).
func (s *Server) SearchAvailability(ctx context.Context, req *pb.SearchAvailabilityRequest) (*pb.SearchAvailabilityResponse, error) {
	if s.caps.Search == nil {
		return nil, status.Error(codes.Unimplemented, "this server does not search availability")
	}
	var check fieldCheck
	q := reservation.SearchQuery{
		Duration: check.duration("duration", req.GetDuration()),
		Step:     check.duration("step", req.GetStep()),
		PoolID:   req.GetPoolId(),
		Selector: req.GetSelector(),
		Places:   int(req.GetPlaces()),
		PageSize: int(req.GetPageSize()),
	}
	window := req.GetStart() != nil || req.GetEnd() != nil
	ranged := req.GetDuration() != nil || req.GetRangeStart() != nil || req.GetRangeEnd() != nil
	switch {
	case window && ranged:
		check.Add("start", "give a window (start, end) or a duration within a range (duration, range_start, range_end), not both")
	case ranged:
		q.Start, q.End = check.time("range_start", req.GetRangeStart()), check.time("range_end", req.GetRangeEnd())
		if q.Duration == 0 && !check.has("duration") {
			check.Add("duration", "is required with range_start and range_end")
		}
	default:
		q.Start, q.End = check.time("start", req.GetStart()), check.time("end", req.GetEnd())
	}
	if d := q.Duration; d > s.opts.MaxDuration {
		check.Add("duration", fmt.Sprintf("a reservation lasts at most %s, got %s", s.opts.MaxDuration, d))
	}
	if d := q.End.Sub(q.Start); !ranged && d > s.opts.MaxDuration && d <= reservation.MaxSearchRange {
		check.Add("end", fmt.Sprintf("reservation lasts %s, longer than the %s allowed", d, s.opts.MaxDuration))
	}
	if t := req.GetPageToken(); t != "" {
		after, ok := decodeSearchToken(&q, t)
		if !ok {
			check.Add("page_token", "is malformed or belongs to another search: pass next_page_token unchanged, with the same search")
		}
		q.After = after
	}
	opt := check.readOptions(req.GetRead())
	check.merge("", q.Validate())
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	if now, ok := s.firstStart(); ok {
		q.NotPast = now
	}
	page, pos, err := s.search(ctx, q, opt)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	setPosition(ctx, pos)
	resp := &pb.SearchAvailabilityResponse{Offers: make([]*pb.AvailabilityOffer, len(page.Offers)), Position: positionProto(pos)}
	for i, o := range page.Offers {
		resp.Offers[i] = &pb.AvailabilityOffer{ResourceId: o.ResourceID, PoolId: o.PoolID, Start: timestamppb.New(o.Start),
			End: timestamppb.New(o.End), Available: int32(min(o.Available, math.MaxInt32))}
	}
	if page.Next != "" {
		resp.NextPageToken = encodeSearchToken(&q, page.Next)
	}
	return resp, nil
}

// search answers q from the read index's view when opt lets it and the view holds the
// window, judged at the view's clock; else from the database (STRONG).
func (s *Server) search(ctx context.Context, q reservation.SearchQuery, opt reservation.ReadOptions) (*reservation.SearchPage, reservation.ReadPosition, error) {
	pos := dbPosition(s.opts.Now())
	if v, ok := s.view(ctx, opt, true); ok {
		page, err := reservation.Search(ctx, reservation.ViewSource(v), q, v.Now())
		if !errors.Is(err, reservation.ErrOutsideView) {
			return page, v.Position(), err
		}
	}
	page, err := s.caps.Search.SearchAvailability(ctx, q)
	return page, pos, err
}

// A search's page token is the resource id it goes on after, with a fingerprint of the
// search, so that a token cannot be replayed against another search.
const searchTokenVersion = 1

func searchPrint(q *reservation.SearchQuery) uint64 {
	h := fnv.New64a()
	for _, s := range []string{q.PoolID, q.Selector} {
		binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	for _, v := range []int64{q.Start.UnixMicro(), q.End.UnixMicro(), int64(q.Duration), int64(q.Step), int64(q.Places)} {
		binary.Write(h, binary.BigEndian, v)
	}
	return h.Sum64()
}

func encodeSearchToken(q *reservation.SearchQuery, after string) string {
	b := []byte{searchTokenVersion}
	b = binary.BigEndian.AppendUint64(b, searchPrint(q))
	return base64.RawURLEncoding.EncodeToString(append(b, after...))
}

// decodeSearchToken returns the resource id a token goes on after, or false when it is
// malformed or was made for another search.
func decodeSearchToken(q *reservation.SearchQuery, token string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 10 || len(b) > 9+reservation.MaxIDLen || b[0] != searchTokenVersion {
		return "", false
	}
	if binary.BigEndian.Uint64(b[1:9]) != searchPrint(q) {
		return "", false
	}
	return string(b[9:]), true
}
