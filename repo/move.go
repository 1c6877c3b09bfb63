package repo

import (
	"context"

	"reservation"
)

// move changes the window or resource of a stored reservation, all or nothing.
func (s *Store) move(ctx context.Context, ref reservation.Ref, e reservation.Edit) (*reservation.Reservation, error) {
	return nil, reservation.Errorf(reservation.EINVALID, "update_mask: moving a reservation is not built yet") // MOVE: replaced by the move work
}
