package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
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

// ref translates the reservation a write is for, the version it expects, if any, and whose
// it must be.
func (check *fieldCheck) ref(ctx context.Context, req refRequest) reservation.Ref {
	v := req.GetExpectedVersion()
	if v < 0 {
		check.Add("expected_version", fmt.Sprintf("must not be negative, got %d", v))
	}
	return reservation.Ref{ID: check.id("id", req.GetId()), Version: v, Owner: owner(ctx)}
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
	}
}
