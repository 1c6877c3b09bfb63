package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"reservation"
	pb "reservation/proto/reservation/v1"
)

// With auth on, the context carries the caller. A user books for themselves and sees,
// changes and hears of only their own reservations: another user's is NOT_FOUND, so ids
// cannot be probed. Only admins book BLOCKED windows or act for other users. With auth off,
// nothing here restricts anything.

// owner is the user whose reservations the caller may reach; "" for any (auth off, or admin).
func owner(ctx context.Context) string {
	if c, ok := reservation.CallerFrom(ctx); ok && !c.Admin {
		return c.UserID
	}
	return ""
}

// actor is who makes a change, as History records it: the authenticated user (an admin
// included); "" with auth off, which records the reservation's user.
func actor(ctx context.Context) string {
	if c, ok := reservation.CallerFrom(ctx); ok {
		return c.UserID
	}
	return ""
}

// claim makes a new reservation the caller's when it names no user, and refuses what the
// caller may not book.
func claim(ctx context.Context, in *pb.Reservation) error {
	c, ok := reservation.CallerFrom(ctx)
	if !ok || in == nil {
		return nil
	}
	if in.UserId == "" {
		in.UserId = c.UserID
	}
	switch {
	case c.Admin:
		return nil
	case in.UserId != c.UserID:
		return reservation.Errorf(reservation.EPERMISSION, "user %q may not reserve for user %q", c.UserID, clip(in.UserId))
	case in.Status == pb.ReservationStatus_RESERVATION_STATUS_BLOCKED:
		return reservation.Errorf(reservation.EPERMISSION, "only admins block resources")
	}
	return nil
}

// restrict keeps a user's query to their own reservations.
func restrict(ctx context.Context, f *reservation.Filter) error {
	o := owner(ctx)
	switch {
	case o == "":
		return nil
	case f.UserID != "" && f.UserID != o:
		return reservation.Errorf(reservation.EPERMISSION, "user %q may not read the reservations of user %q", o, f.UserID)
	}
	f.UserID = o
	return nil
}

// scope makes a request id the caller's own, so that one user's ids never meet another's.
func scope(ctx context.Context, requestID string) string {
	c, ok := reservation.CallerFrom(ctx)
	if !ok || requestID == "" {
		return requestID
	}
	h := sha256.Sum256([]byte(c.UserID + "\x00" + requestID))
	return hex.EncodeToString(h[:]) // 64 bytes, the column's size
}
