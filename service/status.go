package service

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"reservation"
)

// ErrorDomain names this service in google.rpc.ErrorInfo.
const ErrorDomain = "reservation.v1"

// ConflictReason is the ErrorInfo reason of a Reserve rejected for overlap.
const ConflictReason = "RESERVATION_CONFLICT"

// FeedDivergedReason is the ErrorInfo reason of an OUT_OF_RANGE Listen whose cursor belongs
// to a history the feed no longer holds (a failover lost changes the listener received).
const FeedDivergedReason = reservation.ReasonFeedDiverged

// status turns an error from the domain into a gRPC status. Errors that are not the client's
// doing are logged, and their details kept out of the answer.
func (s *Server) status(ctx context.Context, err error) error {
	var e *reservation.Error
	errors.As(err, &e)
	switch reservation.ErrorCode(err) {
	case reservation.EINVALID:
		return badRequest(e.Message, e.Fields)
	case reservation.ENOTFOUND:
		if e.Reason != "" { // RESERVATION_CANCELLED
			return withDetails(codes.NotFound, e.Message, reasonInfo(e))
		}
		return status.Error(codes.NotFound, e.Message)
	case reservation.ECONFLICT:
		return withDetails(codes.FailedPrecondition, e.Message, conflictInfo(e))
	case reservation.ESTATE:
		if e.Reason != "" { // RESOURCE_DISABLED, POOL_FULL
			return withDetails(codes.FailedPrecondition, e.Message, reasonInfo(e))
		}
		return status.Error(codes.FailedPrecondition, e.Message)
	case reservation.EABORTED:
		return status.Error(codes.Aborted, e.Message)
	case reservation.EPERMISSION:
		return status.Error(codes.PermissionDenied, e.Message)
	case reservation.EOUTOFRANGE:
		if e.Reason != "" {
			return withDetails(codes.OutOfRange, e.Message, reasonInfo(e))
		}
		return status.Error(codes.OutOfRange, e.Message)
	case reservation.EEXHAUSTED:
		return status.Error(codes.ResourceExhausted, e.Message)
	case reservation.EUNAVAILABLE:
		s.log.WarnContext(ctx, "unavailable", "err", err)
		return status.Error(codes.Unavailable, e.Message)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	s.log.ErrorContext(ctx, "internal error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

// badRequest is INVALID_ARGUMENT with a google.rpc.BadRequest naming each bad field.
func badRequest(msg string, v reservation.Violations) error {
	br := &errdetails.BadRequest{}
	for _, f := range v {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f.Field, Description: f.Description})
	}
	return withDetails(codes.InvalidArgument, msg, br)
}

func withDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st.Err()
}

// reasonInfo is the ErrorInfo of an error with a Reason: the reason, and the metadata the
// domain gives it (POOL_FULL: pool_id, start and end in RFC 3339, and item, the index of the
// requested reservation refused; RESOURCE_DISABLED: resource_id and item;
// RESERVATION_CANCELLED: reservation_id, cancelled_at in RFC 3339, actor, and reason when one
// was given).
func reasonInfo(e *reservation.Error) *errdetails.ErrorInfo {
	return &errdetails.ErrorInfo{Reason: e.Reason, Domain: ErrorDomain, Metadata: e.Metadata}
}

// conflictInfo lists the reservations in the way: for each, conflict_<n>_id, _start, _end (RFC
// 3339) and _item (the index of the requested reservation it blocks).
func conflictInfo(e *reservation.Error) *errdetails.ErrorInfo {
	md := map[string]string{"conflict_count": fmt.Sprint(len(e.Conflicts)), "conflicts_truncated": fmt.Sprint(e.Truncated)}
	ids := make([]string, len(e.Conflicts))
	for n, c := range e.Conflicts {
		k := fmt.Sprintf("conflict_%d_", n)
		md[k+"id"] = c.Existing.ID
		md[k+"start"] = reservation.FormatTime(c.Existing.Start)
		md[k+"end"] = reservation.FormatTime(c.Existing.End)
		md[k+"item"] = fmt.Sprint(c.Index)
		ids[n] = c.Existing.ID
	}
	md["conflict_ids"] = strings.Join(ids, ",")
	return &errdetails.ErrorInfo{Reason: ConflictReason, Domain: ErrorDomain, Metadata: md}
}
