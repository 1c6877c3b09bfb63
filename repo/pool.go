package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// Pools: a Reserve item with no resource and a pool books the first unit of the pool, by
// resource id, that is enabled, still in the pool and whose admission rule accepts the
// window beside what is stored, the call's direct items and its pooled items already given a
// unit, as a read made without locks finds them. The call then writes on the units chosen
// alone (with its direct items), as a direct booking does, grouped with other calls unless it
// has a request id; under those locks each unit must still be in its pool and enabled, and
// the admission rule is asked again. A unit taken or moved meanwhile sends the call back to
// read again and choose anew, a bounded number of times (optimisticTries). When the read finds
// the pool full, or the tries run out, the call locks every unit of its pools (and its other
// resources), in the one global order, and chooses under those locks: POOL_FULL means every
// unit was full at one moment. Either way two pool bookings never take one unit for
// overlapping windows, and a direct booking of a unit waits for the pool booking or goes
// first. Pool calls are not prechecked nor refused from the conflict cache: the read that
// chooses is their precheck.

const sqlPoolUnits = "SELECT id, pool_id, max_span_us, capacity, disabled FROM resources WHERE pool_id IN (?) ORDER BY id"

// optimisticTries bounds how often a pool call chooses its units from a read made without
// locks before it locks every unit of its pools.
const optimisticTries = 3

// errUnitGone refuses a write on a unit chosen from a read made without locks that has since
// left its pool or been disabled: the call chooses again.
var errUnitGone = errors.New("unit left its pool or was disabled since it was chosen")

// poolItems marks the items of rs that ask for a pool; nil when none does.
func poolItems(rs []*reservation.Reservation) []bool {
	var pooled []bool
	for i, r := range rs {
		if r.ResourceID == "" && r.PoolID != "" {
			if pooled == nil {
				pooled = make([]bool, len(rs))
			}
			pooled[i] = true
		}
	}
	return pooled
}

// reservePool makes out, whose pooled items ask for a pool, with b's hold and request id.
func (s *Store) reservePool(ctx context.Context, b reservation.Booking, out []*reservation.Reservation, pooled []bool) ([]*reservation.Reservation, error) {
	var req *request
	if b.RequestID != "" {
		made := reservation.Booking{Reservations: out, Hold: b.Hold} // before any unit is chosen
		req = &request{id: b.RequestID, fingerprint: made.Fingerprint()}
		if done, err := s.lookup(ctx, s.db, req, s.now()); err != nil {
			return nil, err
		} else if done {
			return req.result()
		}
	}
	var pools, keys []string
	for i, r := range out {
		if pooled[i] {
			pools = append(pools, r.PoolID)
		} else {
			keys = append(keys, r.ResourceID)
		}
	}
	if made, err := s.reserveChosen(ctx, b.Hold, out, pooled, pools, req); made || err != nil {
		if err != nil {
			return nil, err
		}
		if req != nil && req.out != nil {
			return req.result()
		}
		return out, nil
	}
	units, _, err := s.poolUnits(ctx, pools)
	if err != nil {
		return nil, err
	}
	for _, us := range units {
		keys = append(keys, us...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) == 0 {
		first := slices.Index(pooled, true)
		return nil, reservation.PoolFull(first, out[first])
	}
	err = s.write(ctx, keys, func(w *writeTx) error {
		if req != nil {
			if done, err := s.lookup(ctx, w.tx, req, w.now); done || err != nil {
				return err
			}
		}
		if err := s.assign(ctx, w, out, pooled, units); err != nil {
			return err
		}
		if err := s.admit(ctx, w, out, b.Hold); err != nil {
			return err
		}
		if req != nil {
			return saveOutcome(ctx, w.tx, req, outcome{Reservations: out}, w.now)
		}
		return nil
	})
	if reservation.ErrorCode(err) == reservation.ECONFLICT {
		s.stats.conflicts.Add(1)
	}
	if err != nil {
		unassign(out, pooled)
		return nil, err
	}
	if req != nil && req.out != nil {
		return req.result()
	}
	return out, nil
}

// reserveChosen tries to make out by choosing its pooled items' units from a read made
// without locks and writing on those units alone, up to optimisticTries times, and reports
// whether out was made (or, with req, a call with its request id was found done). It gives up,
// leaving the decision to the write that locks every unit, when the read finds a pool full,
// when something other than a unit taken or gone since the read refuses the write (a direct
// item's conflict, say), or when the tries run out.
func (s *Store) reserveChosen(ctx context.Context, hold time.Duration, out []*reservation.Reservation, pooled []bool, pools []string, req *request) (bool, error) {
	for range optimisticTries {
		units, resources, err := s.poolUnits(ctx, pools)
		if err != nil {
			return false, err
		}
		now := s.now()
		err = chooseUnits(ctx, out, pooled, units, resources, func(ctx context.Context, rs []*reservation.Reservation) (blockers, error) {
			found, err := findInTheWay(ctx, s.db, s.opts.MaxConflicts, resources, now, rs)
			return found, classify(err)
		})
		if err == nil {
			err = s.writeChosen(ctx, hold, out, pooled, req)
			if err == nil {
				return true, nil
			}
		}
		unassign(out, pooled)
		switch {
		case errors.Is(err, errUnitGone), reservation.ErrorCode(err) == reservation.ECONFLICT && conflictOnUnit(err, pooled):
			continue // taken or gone since the read: read again
		case reservation.ErrorCode(err) == reservation.ECONFLICT, reservation.ErrorCode(err) == reservation.ESTATE,
			reservation.ErrorCode(err) == reservation.ENOTFOUND:
			return false, nil // POOL_FULL as read, or a direct item refused: decided under every lock
		}
		return false, err
	}
	return false, nil
}

// writeChosen writes out, whose pooled items have the units chosen, locking their resources
// alone: grouped with other calls, or, with a request id, on its own.
func (s *Store) writeChosen(ctx context.Context, hold time.Duration, out []*reservation.Reservation, pooled []bool, req *request) error {
	if req == nil && s.opts.GroupCommit > 1 {
		return s.groups.Do(ctx, &job{ctx: ctx, rs: out, hold: hold, pooled: pooled})
	}
	return s.write(ctx, resourcesOf(out), func(w *writeTx) error {
		if req != nil {
			// Under the locks of other units, a concurrent call with the same request id may
			// be writing too: the one that saves its outcome second fails on the duplicate
			// key, runs again, and finds the first's outcome here.
			if done, err := s.lookup(ctx, w.tx, req, w.now); done || err != nil {
				return err
			}
		}
		if err := w.refuseUnits(out, pooled); err != nil {
			return err
		}
		if err := s.admit(ctx, w, out, hold); err != nil {
			return err
		}
		if req != nil {
			return saveOutcome(ctx, w.tx, req, outcome{Reservations: out}, w.now)
		}
		return nil
	})
}

// refuseUnits fails with errUnitGone when a pooled item of rs (pooled may be nil: none) has
// a unit that, locked, is no longer enabled and in the item's pool.
func (w *writeTx) refuseUnits(rs []*reservation.Reservation, pooled []bool) error {
	for i, r := range rs {
		if pooled == nil || !pooled[i] {
			continue
		}
		if res := w.resources[r.ResourceID]; res.absent || res.disabled || res.poolID != r.PoolID {
			return fmt.Errorf("%w: %s", errUnitGone, r.ResourceID)
		}
	}
	return nil
}

// conflictOnUnit reports whether the conflict err names a pooled item: its unit was taken
// since the read.
func conflictOnUnit(err error, pooled []bool) bool {
	var e *reservation.Error
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range e.Conflicts {
		if c.Index < len(pooled) && pooled[c.Index] {
			return true
		}
	}
	return false
}

// unassign clears the units of out's pooled items.
func unassign(out []*reservation.Reservation, pooled []bool) {
	for i, r := range out {
		if pooled[i] {
			r.ResourceID = ""
		}
	}
}

// poolUnits reads, without locks, the units of the pools, by id, and their rows.
func (s *Store) poolUnits(ctx context.Context, pools []string) (map[string][]string, map[string]*resource, error) {
	query, args, err := sqlx.In(sqlPoolUnits, pools)
	if err != nil {
		return nil, nil, err
	}
	var rows []struct {
		ID       string `db:"id"`
		PoolID   string `db:"pool_id"`
		MaxSpan  int64  `db:"max_span_us"`
		Capacity int    `db:"capacity"`
		Disabled bool   `db:"disabled"`
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, nil, classify(fmt.Errorf("units of %d pools: %w", len(pools), err))
	}
	units := map[string][]string{}
	resources := make(map[string]*resource, len(rows))
	for _, r := range rows {
		units[r.PoolID] = append(units[r.PoolID], r.ID)
		resources[r.ID] = &resource{maxSpan: time.Duration(r.MaxSpan) * time.Microsecond, capacity: max(r.Capacity, 1), disabled: r.Disabled, poolID: r.PoolID}
	}
	return units, resources, nil
}

// assign chooses, under the write's locks, a unit for each pooled item of rs (chooseUnits).
func (s *Store) assign(ctx context.Context, w *writeTx, rs []*reservation.Reservation, pooled []bool, units map[string][]string) error {
	return chooseUnits(ctx, rs, pooled, units, w.resources, w.findInTheWay)
}

// chooseUnits chooses a unit for each pooled item of rs, in order: the first of units (by
// pool, by id) that resources says is enabled and still in the item's pool, and that fits
// beside what find says is stored there, every direct item of the call (those after it too)
// and the pooled items given a unit before it. None: POOL_FULL.
func chooseUnits(ctx context.Context, rs []*reservation.Reservation, pooled []bool, units map[string][]string, resources map[string]*resource,
	find func(context.Context, []*reservation.Reservation) (blockers, error)) error {
	candidates := map[*reservation.Reservation][]*reservation.Reservation{}
	var all []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		r.ResourceID = "" // a transaction run again chooses again
		for _, u := range units[r.PoolID] {
			if res := resources[u]; res != nil && !res.disabled && !res.absent && res.poolID == r.PoolID {
				c := *r
				c.ResourceID = u
				candidates[r] = append(candidates[r], &c)
				all = append(all, &c)
			}
		}
	}
	stored := blockers{}
	if len(all) > 0 {
		var err error
		if stored, err = find(ctx, all); err != nil {
			return err
		}
	}
	// Every direct item of the call is in the way, wherever it stands in the call, and so is
	// each pooled item once it has its unit; those to come have none yet.
	var placed []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			placed = append(placed, r)
		}
	}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		for _, c := range candidates[r] {
			held := append(slices.Clone(stored[c]), placed...)
			if reservation.Fits(c, resources[c.ResourceID].capacity, held) {
				r.ResourceID = c.ResourceID
				break
			}
		}
		if r.ResourceID == "" {
			return reservation.PoolFull(i, r)
		}
		placed = append(placed, r)
	}
	return nil
}
