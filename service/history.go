package service

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// History returns every change of one reservation still kept in the history, oldest first,
// with its actor and reason. With auth on, it follows Get's ownership rule: the history of
// another user's reservation is NOT_FOUND (the owner is the user of the history's
// snapshots); admins see every one. The changes carry seq 0 and no cursor: the history does
// not keep the feed's seq.
func (s *Server) History(ctx context.Context, req *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	h := s.caps.History
	if h == nil {
		return nil, status.Error(codes.Unimplemented, "this server keeps no history")
	}
	var check fieldCheck
	id := check.id("reservation_id", req.GetReservationId())
	if err := check.Err(); err != nil {
		return nil, s.status(ctx, err)
	}
	cs, err := h.History(ctx, id)
	if err == nil && !reservation.Owns(owner(ctx), cs[0].Reservation.UserID) {
		err = reservation.NotFound(id)
	}
	if err != nil {
		return nil, s.status(ctx, err)
	}
	resp := &pb.HistoryResponse{Changes: make([]*pb.ListenResponse, len(cs))}
	for i, c := range cs {
		resp.Changes[i] = toListenResponse(c)
		resp.Changes[i].Cursor = "" // no seq, so no position in the feed
	}
	return resp, nil
}

// cancelled is the error of a Get of id that found no reservation: RESERVATION_CANCELLED,
// saying when, by whom and why, when the history's last change of id, one the caller may
// see, removed it; else err as it was. (A hold that lapsed and was removed is reported the
// same way, by reservation.ActorSystem for reservation.LapsedHold.)
func (s *Server) cancelled(ctx context.Context, id string, err error) error {
	h := s.caps.History
	if h == nil || reservation.ErrorCode(err) != reservation.ENOTFOUND {
		return err
	}
	cs, herr := h.History(ctx, id)
	if herr != nil {
		if reservation.ErrorCode(herr) != reservation.ENOTFOUND {
			s.log.WarnContext(ctx, "reading the history of a reservation not found failed", "reservation_id", id, "err", herr)
		}
		return err
	}
	last := cs[len(cs)-1]
	if last.Op != reservation.OpDelete || !reservation.Owns(owner(ctx), last.Reservation.UserID) {
		return err
	}
	return reservation.Cancelled(id, last.CommittedAt, last.Actor, last.Reason)
}
