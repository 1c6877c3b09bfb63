package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// The catalogue's handlers: Get and List are open to every caller, Put (with auth on) to
// admins alone. A Server given no Catalogue answers UNIMPLEMENTED.

func (s *Server) catalogue() (reservation.Catalogue, error) {
	if s.caps.Catalogue == nil {
		return nil, status.Error(codes.Unimplemented, "this server keeps no resource catalogue")
	}
	return s.caps.Catalogue, nil
}

func (s *Server) PutResource(ctx context.Context, req *pb.PutResourceRequest) (*pb.PutResourceResponse, error) {
	if c, ok := reservation.CallerFrom(ctx); ok && !c.Admin {
		return nil, s.status(ctx, reservation.Errorf(reservation.EPERMISSION, "only admins put resources"))
	}
	cat, err := s.catalogue()
	if err != nil {
		return nil, err
	}
	var check fieldCheck
	in := req.GetResource()
	if in == nil {
		check.Add("resource", "is required")
		return nil, s.status(ctx, check.Err())
	}
	r := &reservation.Resource{
		ID: in.GetId(), PoolID: in.GetPoolId(), Capacity: int(in.GetCapacity()), TimeZone: in.GetTimeZone(),
		DisplayName: in.GetDisplayName(), Labels: in.GetLabels(), Disabled: in.GetDisabled(),
		Rules: reservation.Rules{
			BufferBefore: check.duration("resource.buffer_before", in.GetBufferBefore()),
			BufferAfter:  check.duration("resource.buffer_after", in.GetBufferAfter()),
			MinDuration:  check.duration("resource.min_duration", in.GetMinDuration()),
			MaxDuration:  check.duration("resource.max_duration", in.GetMaxDuration()),
			MinNotice:    check.duration("resource.min_notice", in.GetMinNotice()),
			MaxAdvance:   check.duration("resource.max_advance", in.GetMaxAdvance()),
		},
	}
	check.merge("", r.Validate("resource."))
	if v := req.GetExpectedVersion(); v < 0 {
		check.Add("expected_version", fmt.Sprintf("must not be negative, got %d", v))
	}
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	out, err := cat.PutResource(ctx, r, req.GetExpectedVersion())
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.PutResourceResponse{Resource: resourceProto(out), ConsistencyToken: token(nil, out)}, nil
}

func (s *Server) GetResource(ctx context.Context, req *pb.GetResourceRequest) (*pb.GetResourceResponse, error) {
	cat, err := s.catalogue()
	if err != nil {
		return nil, err
	}
	var check fieldCheck
	id := req.GetId()
	check.ID("id", id)
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	r, err := cat.GetResource(ctx, id)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	return &pb.GetResourceResponse{Resource: resourceProto(r)}, nil
}

func (s *Server) ListResources(ctx context.Context, req *pb.ListResourcesRequest) (*pb.ListResourcesResponse, error) {
	cat, err := s.catalogue()
	if err != nil {
		return nil, err
	}
	var check fieldCheck
	f := reservation.ResourceFilter{PoolID: req.GetPoolId()}
	if f.PoolID != "" {
		check.ID("pool_id", f.PoolID)
	}
	size := check.pageSize(req.GetPageSize())
	if t := req.GetPageToken(); t != "" {
		after, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(after) == 0 || len(after) > reservation.MaxIDLen {
			check.Add("page_token", "is malformed: pass next_page_token unchanged")
		}
		f.After = string(after)
	}
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	f.Limit = size + 1 // one more, to know whether another page follows
	rs, err := cat.ListResources(ctx, f)
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.ListResourcesResponse{}
	if len(rs) > size {
		rs = rs[:size]
		resp.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(rs[size-1].ID))
	}
	resp.Resources = make([]*pb.Resource, len(rs))
	for i, r := range rs {
		resp.Resources[i] = resourceProto(r)
	}
	return resp, nil
}

func resourceProto(r *reservation.Resource) *pb.Resource {
	return &pb.Resource{
		Id: r.ID, PoolId: r.PoolID, Capacity: int32(min(r.Capacity, math.MaxInt32)), TimeZone: r.TimeZone,
		DisplayName: r.DisplayName, Labels: r.Labels, Disabled: r.Disabled, Version: r.Version,
		CreatedAt: timestamppb.New(r.CreatedAt), UpdatedAt: timestamppb.New(r.UpdatedAt),
		BufferBefore: durationOrNil(r.BufferBefore), BufferAfter: durationOrNil(r.BufferAfter),
		MinDuration: durationOrNil(r.MinDuration), MaxDuration: durationOrNil(r.MaxDuration),
		MinNotice: durationOrNil(r.MinNotice), MaxAdvance: durationOrNil(r.MaxAdvance),
	}
}

// durationOrNil is a rule on the wire: unset for none.
func durationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}
