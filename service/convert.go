package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// request collects what is wrong with a request while it is translated to the domain.
type request struct {
	reservation.Violations
}

// time converts a timestamp; nil gives the zero time, which the domain treats as absent.
func (q *request) time(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		q.Add(field, fmt.Sprintf("invalid timestamp (seconds %d, nanos %d)", ts.GetSeconds(), ts.GetNanos()))
		return time.Time{}
	}
	return reservation.Truncate(ts.AsTime())
}

// id parses a reservation id, a UUID, into its canonical form.
func (q *request) id(field, s string) string {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		if s == "" {
			q.Add(field, "is required")
		} else {
			q.Add(field, fmt.Sprintf("must be a reservation id (a UUID), got %q", clip(s)))
		}
		return ""
	}
	return u.String()
}

// merge adds the violations of a domain check, naming fields under prefix, except for fields
// already reported while translating.
func (q *request) merge(prefix string, err error) {
	var e *reservation.Error
	if !errors.As(err, &e) {
		return
	}
	for _, v := range e.Fields {
		if f := prefix + v.Field; !q.has(f) {
			q.Add(f, v.Description)
		}
	}
}

// has reports whether field was already found wrong.
func (q *request) has(field string) bool {
	return slices.ContainsFunc(q.Violations, func(v reservation.FieldViolation) bool { return v.Field == field })
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
	}
}

func toListenResponse(c *reservation.Change) *pb.ListenResponse {
	return &pb.ListenResponse{
		Seq:         c.Seq,
		Op:          pb.ReservationUpdateType(c.Op),
		Reservation: toProto(c.Reservation),
		CommittedAt: timestamppb.New(c.CommittedAt),
	}
}
