package repo

import (
	"context"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// Pools: a Reserve item with no resource and a pool books the first unit of the pool, by
// resource id, that is enabled, still in the pool and whose admission rule accepts the
// window beside what is stored, the call's direct items and its pooled items already given a
// unit. The call locks every unit of
// its pools (and its other resources), in the one global order, and chooses under those
// locks: two pool bookings never take one unit for overlapping windows, a direct booking of a
// unit waits for the pool booking or goes first, and POOL_FULL means every unit was full at
// one moment. Pool calls are written alone: not grouped, not prechecked, not refused from the
// conflict cache.

const sqlPoolUnits = "SELECT id, pool_id FROM resources WHERE pool_id IN (?) ORDER BY id"

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
	units, err := s.poolUnits(ctx, pools)
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
		for i, r := range out {
			if pooled[i] {
				r.ResourceID = ""
			}
		}
		return nil, err
	}
	if req != nil && req.out != nil {
		return req.result()
	}
	return out, nil
}

// poolUnits reads the units of the pools, by id.
func (s *Store) poolUnits(ctx context.Context, pools []string) (map[string][]string, error) {
	query, args, err := sqlx.In(sqlPoolUnits, pools)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID     string `db:"id"`
		PoolID string `db:"pool_id"`
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("units of %d pools: %w", len(pools), err))
	}
	out := map[string][]string{}
	for _, r := range rows {
		out[r.PoolID] = append(out[r.PoolID], r.ID)
	}
	return out, nil
}

// assign chooses, under the write's locks, a unit for each pooled item of rs, in order: the
// first by id that is enabled, still in its pool, and fits beside what is stored, every
// direct item of the call (those after it too) and the pooled items given a unit before it.
// None: POOL_FULL.
func (s *Store) assign(ctx context.Context, w *writeTx, rs []*reservation.Reservation, pooled []bool, units map[string][]string) error {
	candidates := map[*reservation.Reservation][]*reservation.Reservation{}
	var all []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		r.ResourceID = "" // a transaction run again chooses again
		for _, u := range units[r.PoolID] {
			if res := w.resources[u]; res != nil && !res.disabled && !res.absent && res.poolID == r.PoolID {
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
		if stored, err = w.findInTheWay(ctx, all); err != nil {
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
			if reservation.Fits(c, w.capacity(c.ResourceID), held) {
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
