package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"reservation"
)

// sqlMove writes a moved reservation: its resource, window and pool, its note (as the edit
// leaves it), its time and version. Its status and hold expiry stay as they are.
const sqlMove = "UPDATE reservations SET resource_id = ?, start_at = ?, end_at = ?, pool_id = ?, note = ?, updated_at = ?, version = ? WHERE id = ?"

// movedAway says that the reservation was moved to another resource, to, between the read
// of its resource and the locks: the locks held are not its resource's, so nothing is written
// and the call runs again on to.
type movedAway struct{ to string }

func (m *movedAway) Error() string {
	return fmt.Sprintf("the reservation moved to resource %q before it was locked", m.to)
}

// maxRelocks bounds how often onLocked runs again on the resource a concurrent move took the
// reservation to. Each time means that another move of the same reservation committed
// meanwhile. In TestConcurrentMovesAndReserves (24 writers on three replicas moving 3 shared
// reservations among others), with its conflict check switched off so that most moves
// succeed, a call ran again at most 7 times in a row over three runs; the store's Retries (5)
// made calls give up.
const maxRelocks = 20

// onLocked runs fn on the reservation ref names, read FOR UPDATE in a write that holds the
// locks of its resource and of to (the resource it moves to; "" for none), in the one sorted
// order every write takes them in. Its resource is read without locks first, to know what to
// lock; should a concurrent move take it elsewhere meanwhile, the write is given up before
// anything is written and run again on the resource it is on now (up to maxRelocks times, then
// EABORTED). A reservation the caller may not find (ref.Owner) is not found; one at another
// version than ref.Version is EABORTED.
func (s *Store) onLocked(ctx context.Context, ref reservation.Ref, to string, fn func(w *writeTx, r *reservation.Reservation) error) error {
	var owner struct {
		ResourceID string `db:"resource_id"`
		UserID     string `db:"user_id"`
	}
	err := s.db.GetContext(ctx, &owner, sqlOwner, ref.ID)
	if isNoRows(err) || (err == nil && !reservation.Owns(ref.Owner, owner.UserID)) {
		return reservation.NotFound(ref.ID) // (the user of a reservation never changes)
	}
	if err != nil {
		return classify(err)
	}
	for relocks := 0; ; relocks++ {
		keys := []string{owner.ResourceID}
		if to != "" {
			keys = append(keys, to)
		}
		slices.Sort(keys)
		err = s.write(ctx, slices.Compact(keys), func(w *writeTx) error {
			r, err := getRow(ctx, w.tx, ref.ID, " FOR UPDATE")
			if err != nil {
				return err
			}
			if r.ResourceID != owner.ResourceID {
				return &movedAway{r.ResourceID}
			}
			if ref.Version != 0 && ref.Version != r.Version {
				return reservation.Errorf(reservation.EABORTED, "reservation %s is at version %d, not %d", r.ID, r.Version, ref.Version)
			}
			return fn(w, r)
		})
		var moved *movedAway
		if !errors.As(err, &moved) {
			return err
		}
		if relocks == maxRelocks {
			return &reservation.Error{Code: reservation.EABORTED, Message: fmt.Sprintf("reservation %s kept moving: gave up after %d attempts", ref.ID, relocks+1), Err: err}
		}
		owner.ResourceID = moved.to
	}
}

// move changes the window or resource of a stored reservation, all or nothing, under the
// locks of both its resource and the one it moves to. The moved reservation passes what a
// new one passes (the resource's refusals, then the admission rule beside what is stored),
// except that its own current window is never in its way. Its status and hold expiry stay;
// its version moves on by one, as do both resources'; the feed records one UPDATE, under the
// resource it moved to, which a move across resources records as moved from the old one too,
// so that the old resource's listeners hear that the reservation left it.
func (s *Store) move(ctx context.Context, ref reservation.Ref, e reservation.Edit) (*reservation.Reservation, error) {
	var out *reservation.Reservation
	err := s.onLocked(ctx, ref, e.ResourceID, func(w *writeTx, r *reservation.Reservation) error {
		if r.Expired(w.now) {
			return lapsed(r)
		}
		m := e.Apply(r)
		if err := e.CheckWindow(m); err != nil {
			return err
		}
		moved := []*reservation.Reservation{m}
		if err := w.refuseResources(moved); err != nil {
			return err
		}
		stored, err := w.findInTheWay(ctx, moved)
		if err != nil {
			return err
		}
		// The reservation as it is stored now never stands in its own way.
		stored[m] = slices.DeleteFunc(stored[m], func(o *reservation.Reservation) bool { return o.ID == m.ID })
		if conflicts, truncated := s.inTheWay(moved, stored, nil, w.policy); len(conflicts) > 0 {
			return conflictError(moved, conflicts, truncated)
		}
		res := w.resources[m.ResourceID]
		m.PoolID = res.poolID // the resource's pool, as it is when booked
		res.maxSpan = max(res.maxSpan, m.End.Sub(m.Start))
		movedFrom := ""
		if m.ResourceID != r.ResourceID {
			w.resources[r.ResourceID].version++ // it lost a reservation
			movedFrom = r.ResourceID
		}
		w.changeFrom(reservation.OpUpdate, m, ref, movedFrom)
		out = m
		return w.flush(ctx, stmt{sqlMove, []any{m.ResourceID, m.Start, m.End, m.PoolID, m.Note, m.UpdatedAt, m.Version, m.ID}})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
