package reservation_test

import (
	"testing"

	"reservation"
)

// A resource's filter selects the changes of its reservations and the moves away from it; a
// user's filter holds beside it.
func TestChangeFilterSelectsTheMovesAwayFromItsResource(t *testing.T) {
	change := func(resource, movedFrom, user string) *reservation.Change {
		return &reservation.Change{Op: reservation.OpUpdate, MovedFrom: movedFrom,
			Reservation: &reservation.Reservation{ResourceID: resource, UserID: user}}
	}
	for _, tc := range []struct {
		f    reservation.ChangeFilter
		c    *reservation.Change
		want bool
	}{
		{reservation.ChangeFilter{}, change("b", "a", "u"), true},
		{reservation.ChangeFilter{ResourceID: "a"}, change("a", "", "u"), true},
		{reservation.ChangeFilter{ResourceID: "a"}, change("b", "a", "u"), true}, // moved from a to b
		{reservation.ChangeFilter{ResourceID: "b"}, change("b", "a", "u"), true},
		{reservation.ChangeFilter{ResourceID: "c"}, change("b", "a", "u"), false},
		{reservation.ChangeFilter{ResourceID: "a"}, change("b", "", "u"), false},
		{reservation.ChangeFilter{ResourceID: "a", UserID: "v"}, change("b", "a", "u"), false},
		{reservation.ChangeFilter{ResourceID: "a", UserID: "u"}, change("b", "a", "u"), true},
	} {
		if got := tc.f.Selects(tc.c); got != tc.want {
			t.Errorf("%+v selects a change of %s moved from %q by %s: %v, want %v",
				tc.f, tc.c.Reservation.ResourceID, tc.c.MovedFrom, tc.c.Reservation.UserID, got, tc.want)
		}
	}
}
