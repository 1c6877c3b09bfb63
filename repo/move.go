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

// errMoved says that the reservation was moved to another resource between the unlocked
// read of its resource and the locks: the locks held are not its resource's, so nothing is
// written and the call reads its resource again.
var errMoved = errors.New("the reservation moved to another resource before it was locked")

// onLocked runs fn on the reservation ref names, read FOR UPDATE in a write that holds the
// locks of its resource and of to (the resource it moves to; "" for none), in the one sorted
// order every write takes them in. Its resource is read without locks first, to know what to
// lock; should a concurrent move take it elsewhere meanwhile, the write is given up before
// anything is written and run again on the resource read anew (a bounded number of times).
// A reservation the caller may not find (ref.Owner) is not found; one at another version
// than ref.Version is EABORTED.
func (s *Store) onLocked(ctx context.Context, ref reservation.Ref, to string, fn func(w *writeTx, r *reservation.Reservation) error) error {
	for attempt := 0; ; attempt++ {
		var owner struct {
			ResourceID string `db:"resource_id"`
			UserID     string `db:"user_id"`
		}
		err := s.db.GetContext(ctx, &owner, sqlOwner, ref.ID)
		if isNoRows(err) || (err == nil && !reservation.Owns(ref.Owner, owner.UserID)) {
			return reservation.NotFound(ref.ID)
		}
		if err != nil {
			return classify(err)
		}
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
				return errMoved
			}
			if ref.Version != 0 && ref.Version != r.Version {
				return reservation.Errorf(reservation.EABORTED, "reservation %s is at version %d, not %d", r.ID, r.Version, ref.Version)
			}
			return fn(w, r)
		})
		if !errors.Is(err, errMoved) {
			return err
		}
		if attempt == s.opts.Retries {
			return &reservation.Error{Code: reservation.EABORTED, Message: fmt.Sprintf("reservation %s kept moving: gave up after %d attempts", ref.ID, attempt+1), Err: err}
		}
	}
}

// move changes the window or resource of a stored reservation, all or nothing, under the
// locks of both its resource and the one it moves to. The moved reservation passes what a
// new one passes (the resource's refusals, then the admission rule beside what is stored),
// except that its own current window is never in its way. Its status and hold expiry stay;
// its version moves on by one, as do both resources'; the feed records one UPDATE, under the
// resource it moved to.
func (s *Store) move(ctx context.Context, ref reservation.Ref, e reservation.Edit) (*reservation.Reservation, error) {
	var v reservation.Violations
	v.Time("start", e.Start, false)
	v.Time("end", e.End, false)
	if err := v.Err(); err != nil {
		return nil, err
	}
	var out *reservation.Reservation
	err := s.onLocked(ctx, ref, e.ResourceID, func(w *writeTx, r *reservation.Reservation) error {
		if r.Expired(w.now) {
			return lapsed(r)
		}
		m := e.Apply(r)
		if err := mergedWindow(e, m); err != nil {
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
		if conflicts, truncated := s.inTheWay(moved, stored, nil, w.capacity); len(conflicts) > 0 {
			return conflictError(moved, conflicts, truncated)
		}
		res := w.resources[m.ResourceID]
		m.PoolID = res.poolID // the resource's pool, as it is when booked
		res.maxSpan = max(res.maxSpan, m.End.Sub(m.Start))
		if m.ResourceID != r.ResourceID {
			w.resources[r.ResourceID].version++ // it lost a reservation
		}
		w.change(reservation.OpUpdate, m, ref)
		out = m
		return w.flush(ctx, stmt{sqlMove, []any{m.ResourceID, m.Start, m.End, m.PoolID, m.Note, m.UpdatedAt, m.Version, m.ID}})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// mergedWindow checks the window of m, the reservation as e leaves it: its start must be
// before its end. The field named is the one e changes: "end" when e sets the end, "start"
// when e moves the start alone to or past the stored end.
func mergedWindow(e reservation.Edit, m *reservation.Reservation) error {
	if m.Start.Before(m.End) {
		return nil
	}
	var v reservation.Violations
	if !e.End.IsZero() {
		v.Add("end", fmt.Sprintf("must be after start (%s), got %s", reservation.FormatTime(m.Start), reservation.FormatTime(m.End)))
	} else {
		v.Add("start", fmt.Sprintf("must be before end (%s), got %s", reservation.FormatTime(m.End), reservation.FormatTime(m.Start)))
	}
	return v.Err()
}
