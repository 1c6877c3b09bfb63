package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// fieldCheck collects what is wrong with a request's fields while it is translated to the
// domain; Err is them all, as one INVALID error.
type fieldCheck struct {
	reservation.Violations
}

// time converts a timestamp; nil gives the zero time, which the domain treats as absent.
func (check *fieldCheck) time(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		check.Add(field, fmt.Sprintf("invalid timestamp (seconds %d, nanos %d)", ts.GetSeconds(), ts.GetNanos()))
		return time.Time{}
	}
	return reservation.Truncate(ts.AsTime())
}

// duration converts a duration; nil gives 0.
func (check *fieldCheck) duration(field string, d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	if err := d.CheckValid(); err != nil {
		check.Add(field, fmt.Sprintf("invalid duration (seconds %d, nanos %d)", d.GetSeconds(), d.GetNanos()))
		return 0
	}
	return d.AsDuration()
}

// refRequest is what the requests that change one reservation share.
type refRequest interface {
	GetId() string
	GetExpectedVersion() int64
}

// ref translates the reservation a write is for, the version it expects, if any, whose it
// must be, who makes the change and why (a request with a reason field).
func (check *fieldCheck) ref(ctx context.Context, req refRequest) reservation.Ref {
	v := req.GetExpectedVersion()
	if v < 0 {
		check.Add("expected_version", fmt.Sprintf("must not be negative, got %d", v))
	}
	ref := reservation.Ref{ID: check.id("id", req.GetId()), Version: v, Owner: owner(ctx), Actor: actor(ctx)}
	if r, ok := req.(interface{ GetReason() string }); ok {
		ref.Reason = r.GetReason()
		check.Note("reason", ref.Reason)
	}
	return ref
}

// The paths of UpdateRequest.update_mask.
const (
	pathNote       = "note"
	pathStart      = "start"
	pathEnd        = "end"
	pathResourceID = "resource_id"
)

// edit translates what an Update changes: the note alone when the mask is empty, as before
// masks; otherwise each path the mask names, whose field must then be set (a note may be "").
func (check *fieldCheck) edit(req *pb.UpdateRequest) reservation.Edit {
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		note := req.GetNote()
		check.Note("note", note)
		return reservation.Edit{Note: &note}
	}
	var e reservation.Edit
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			check.Add("update_mask", fmt.Sprintf("names %q twice", clip(p)))
			continue
		}
		seen[p] = true
		switch p {
		case pathNote:
			note := req.GetNote()
			check.Note("note", note)
			e.Note = &note
		case pathStart:
			e.Start = check.time("start", req.GetStart())
			if req.GetStart() == nil {
				check.Add("start", "is required when update_mask names it")
			}
		case pathEnd:
			e.End = check.time("end", req.GetEnd())
			if req.GetEnd() == nil {
				check.Add("end", "is required when update_mask names it")
			}
		case pathResourceID:
			e.ResourceID = req.GetResourceId()
			check.ID("resource_id", e.ResourceID)
		default:
			check.Add("update_mask", fmt.Sprintf("unknown path %q: the paths are note, start, end and resource_id", clip(p)))
		}
	}
	if !e.Start.IsZero() && !e.End.IsZero() && !e.Start.Before(e.End) && !check.has("start") && !check.has("end") {
		check.Add("end", fmt.Sprintf("must be after start (%s), got %s", reservation.FormatTime(e.Start), reservation.FormatTime(e.End)))
	}
	return e
}

// id parses a reservation id, a UUID, into its canonical form.
func (check *fieldCheck) id(field, s string) string {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		if s == "" {
			check.Add(field, "is required")
		} else {
			check.Add(field, fmt.Sprintf("must be a reservation id (a UUID), got %q", clip(s)))
		}
		return ""
	}
	return u.String()
}

// pageSize reads a list's page_size: 0 means defaultPageSize, and more than maxPageSize is
// cut to it, as AIP-158 allows.
func (check *fieldCheck) pageSize(n int32) int {
	switch {
	case n < 0:
		check.Add("page_size", fmt.Sprintf("must not be negative, got %d", n))
		return 0
	case n == 0:
		return defaultPageSize
	}
	return min(int(n), maxPageSize)
}

// merge adds the violations of a domain check, naming fields under prefix, except for fields
// already reported while translating.
func (check *fieldCheck) merge(prefix string, err error) {
	var e *reservation.Error
	if !errors.As(err, &e) {
		return
	}
	for _, v := range e.Fields {
		if f := prefix + v.Field; !check.has(f) {
			check.Add(f, v.Description)
		}
	}
}

// has reports whether field was already found wrong.
func (check *fieldCheck) has(field string) bool {
	return slices.ContainsFunc(check.Violations, func(v reservation.FieldViolation) bool { return v.Field == field })
}

// clip shortens a hostile value before it is echoed in an error.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

func toProto(r *reservation.Reservation) *pb.Reservation {
	return &pb.Reservation{
		Id:         r.ID,
		UserId:     r.UserID,
		Status:     pb.ReservationStatus(r.Status),
		ResourceId: r.ResourceID,
		Start:      timestamppb.New(r.Start),
		End:        timestamppb.New(r.End),
		Note:       r.Note,
		CreatedAt:  timestamppb.New(r.CreatedAt),
		UpdatedAt:  timestamppb.New(r.UpdatedAt),
		Version:    r.Version,
		ExpiresAt:  timestampOrNil(r.ExpiresAt),
		PoolId:     r.PoolID,
		SeriesId:   r.SeriesID,
	}
}

func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func toListenResponse(c *reservation.Change) *pb.ListenResponse {
	return &pb.ListenResponse{
		Seq:         c.Seq,
		Op:          pb.ReservationUpdateType(c.Op),
		Reservation: toProto(c.Reservation),
		CommittedAt: timestamppb.New(c.CommittedAt),
		Cursor:      c.Cursor().String(),
		Actor:       c.Actor,
		Reason:      c.Reason,
	}
}

// EncodeChange is change c as Listen sends it, a ListenResponse, in protobuf's binary
// encoding: the body of an exported change (package jetstream).
func EncodeChange(c *reservation.Change) ([]byte, error) {
	return proto.Marshal(toListenResponse(c))
}
