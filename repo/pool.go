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
// unit. A read made without locks finds, for each pooled item, the first unitsPerTry units
// that look free; the call locks those alone (and its direct resources), grouped with other
// calls unless it has a request id, and chooses under the locks the first of them that is
// still in the pool, enabled and free. When none is, the call reads again, up to
// optimisticTries times. When the read finds no unit free, or the tries run out, the call
// locks every unit of its pools, in the one global order, and chooses among them all: only
// that answers POOL_FULL, which so means every unit was full at one moment. Either way two
// pool bookings never take one unit for overlapping windows, a direct booking of a unit waits
// for the pool booking or goes first, and the unit booked is the first by id that was free
// when read. Pool calls are not prechecked nor refused from the conflict cache: the read is
// their precheck.
//
// A unit whose booking rules (Rules.Check) refuse an item's window at the call's time is no
// candidate for it. When every enabled unit of the pool refuses it so, the call is refused
// with that RULE_VIOLATION (naming the first unit, by id), not POOL_FULL: no unit would ever
// take that window then, however many are free.

const sqlPoolUnits = "SELECT id, pool_id, max_span_us, capacity, disabled, " + rulesColumns + " FROM resources WHERE pool_id IN (?) ORDER BY id"

const (
	// optimisticTries bounds how often a pool call locks only the units a read found free
	// before it locks every unit of its pools.
	optimisticTries = 3
	// unitsPerTry is how many of the units a read found free for a pooled item the call
	// locks: concurrent calls that read the same first free unit move on to the next under
	// the locks, rather than read again.
	unitsPerTry = 3
)

// errUnitsGone refuses a write on units a read found free, none of which, locked, still is
// (taken, disabled or moved out of the pool since): the call reads again.
var errUnitsGone = errors.New("the units read free were taken or left the pool")

// pick is the units a pool call locks and chooses among: by pool, by id. all says they are
// every unit of the pools, so that none fitting is POOL_FULL, not errUnitsGone.
type pick struct {
	units map[string][]string
	all   bool
}

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

// reservePool makes out, whose pooled items ask for a pool, with b's hold, under req if any.
func (s *Store) reservePool(ctx context.Context, b reservation.Booking, out []*reservation.Reservation, pooled []bool, req *request) ([]*reservation.Reservation, error) {
	if req != nil {
		if done, err := s.lookup(ctx, s.db, req, s.now()); err != nil {
			return nil, err
		} else if done {
			return req.result()
		}
	}
	var pools []string
	for i, r := range out {
		if pooled[i] {
			pools = append(pools, r.PoolID)
		}
	}
	for try := 0; ; try++ {
		units, resources, err := s.poolUnits(ctx, pools)
		if err != nil {
			return nil, err
		}
		p := pick{units: units, all: true}
		if try < optimisticTries {
			free, err := s.freeUnits(ctx, out, pooled, units, resources)
			if err != nil {
				return nil, err
			}
			if free != nil {
				p = pick{units: free}
			}
		}
		err = s.writePooled(ctx, b, out, pooled, p, req)
		if err != nil {
			unassign(out, pooled)
		}
		if errors.Is(err, errUnitsGone) {
			continue
		}
		if reservation.ErrorCode(err) == reservation.ECONFLICT {
			s.stats.conflicts.Add(1)
		}
		if err != nil {
			return nil, err
		}
		if req != nil && req.out != nil {
			return req.result()
		}
		return out, nil
	}
}

// freeUnits reads, without locks, which units of each pooled item's pool (units, whose rows
// are resources) its window fits on beside what is stored and the call's direct items, and
// returns the first unitsPerTry of them for each item, by pool and id; nil when an item has
// none: the pool looks full.
func (s *Store) freeUnits(ctx context.Context, rs []*reservation.Reservation, pooled []bool, units map[string][]string, resources map[string]*resource) (map[string][]string, error) {
	now := s.now()
	candidates, all, _ := candidatesOf(rs, pooled, units, resources, now)
	if len(all) == 0 {
		return nil, nil
	}
	stored, err := findInTheWay(ctx, s.db, s.opts.MaxConflicts, resources, now, all)
	if err != nil {
		return nil, classify(err)
	}
	var direct []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			direct = append(direct, r)
		}
	}
	free := map[string][]string{}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		n := 0
		for _, c := range candidates[r] {
			if n < unitsPerTry && reservation.Fits(c, resources[c.ResourceID].policy(), append(slices.Clone(stored[c]), direct...)) {
				free[r.PoolID] = append(free[r.PoolID], c.ResourceID)
				n++
			}
		}
		if n == 0 {
			return nil, nil
		}
	}
	for pool, us := range free {
		slices.Sort(us)
		free[pool] = slices.Compact(us)
	}
	return free, nil
}

// writePooled writes out, booking b's reservations with its hold and actor, choosing its
// pooled items' units under the locks of p's units (and of its direct items' resources):
// grouped with other calls, or, with a request id or without group commit, on its own.
func (s *Store) writePooled(ctx context.Context, b reservation.Booking, out []*reservation.Reservation, pooled []bool, p pick, req *request) error {
	hold := b.Hold
	keys := pooledKeys(out, pooled, p)
	if len(keys) == 0 {
		first := slices.Index(pooled, true)
		return reservation.PoolFull(first, out[first])
	}
	if req == nil && s.opts.GroupCommit > 1 {
		return s.groups.Do(ctx, &job{ctx: ctx, rs: out, hold: hold, actor: b.Actor, pooled: pooled, pick: p})
	}
	return s.write(ctx, keys, func(w *writeTx) error {
		if req != nil {
			// A concurrent call with the same request id may hold other units' locks: the one
			// that saves its outcome second fails on the duplicate key, runs again, and finds
			// the first's outcome here.
			if done, err := s.lookup(ctx, w.tx, req, w.now); done || err != nil {
				return err
			}
		}
		if err := s.assign(ctx, w, out, pooled, p); err != nil {
			return err
		}
		if err := s.admit(ctx, w, out, hold, b.Actor); err != nil {
			return err
		}
		if req != nil {
			return saveOutcome(ctx, w.tx, req, req.made(out), w.now)
		}
		return nil
	})
}

// pooledKeys are the resources a pool call locks: its direct items' and p's units, sorted.
func pooledKeys(rs []*reservation.Reservation, pooled []bool, p pick) []string {
	var keys []string
	for i, r := range rs {
		if !pooled[i] {
			keys = append(keys, r.ResourceID)
		}
	}
	for _, us := range p.units {
		keys = append(keys, us...)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
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
		rulesRow
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, nil, classify(fmt.Errorf("units of %d pools: %w", len(pools), err))
	}
	units := map[string][]string{}
	resources := make(map[string]*resource, len(rows))
	for _, r := range rows {
		units[r.PoolID] = append(units[r.PoolID], r.ID)
		resources[r.ID] = &resource{maxSpan: time.Duration(r.MaxSpan) * time.Microsecond, capacity: max(r.Capacity, 1), disabled: r.Disabled, poolID: r.PoolID, rules: r.rules()}
	}
	return units, resources, nil
}

// assign chooses, under the write's locks, a unit of p for each pooled item of rs
// (chooseUnits).
func (s *Store) assign(ctx context.Context, w *writeTx, rs []*reservation.Reservation, pooled []bool, p pick) error {
	candidates, all, refused := candidatesOf(rs, pooled, p.units, w.resources, w.now)
	stored := blockers{}
	if len(all) > 0 {
		var err error
		if stored, err = w.findInTheWay(ctx, all); err != nil {
			return err
		}
	}
	return chooseUnits(rs, pooled, candidates, refused, stored, w.policy, nil, p.all)
}

// candidatesOf pairs each pooled item of rs with a copy of it on each unit of its pool in
// units that resources says is enabled and in the pool, and whose rules admit it at now, by
// id, and returns all the copies too. refused has, for each item that every such unit's rules
// refuse, the refusal of the first. It clears the items' units: a transaction run again
// chooses again.
func candidatesOf(rs []*reservation.Reservation, pooled []bool, units map[string][]string, resources map[string]*resource, now time.Time) (
	candidates map[*reservation.Reservation][]*reservation.Reservation, all []*reservation.Reservation, refused map[*reservation.Reservation]error) {
	candidates = map[*reservation.Reservation][]*reservation.Reservation{}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		r.ResourceID = ""
		var ruled error
		for _, u := range units[r.PoolID] {
			if res := resources[u]; res != nil && !res.disabled && !res.absent && res.poolID == r.PoolID {
				c := *r
				c.ResourceID = u
				if err := res.rules.Check(i, &c, now); err != nil {
					if ruled == nil {
						ruled = err
					}
					continue
				}
				candidates[r] = append(candidates[r], &c)
				all = append(all, &c)
			}
		}
		if ruled != nil && len(candidates[r]) == 0 {
			if refused == nil {
				refused = map[*reservation.Reservation]error{}
			}
			refused[r] = ruled
		}
	}
	return candidates, all, refused
}

// maxUnitChoices bounds the fit checks one chooseUnits makes. A call's pooled items are few
// and a pool's units tens, so a search that runs out of it is a batch asking for much of a
// large pool; it is answered as if no assignment fitted.
const maxUnitChoices = 10_000

// chooseUnits gives each pooled item of rs a unit among its candidates such that every item
// fits beside what is stored there, others (written earlier in the same transaction, by
// resource), every direct item of the call and the other pooled items. Of the assignments
// that fit it takes the first in the candidates' order, item by item: a lone pooled item gets
// its first candidate that fits, and a batch's first item gives up its first choice only
// when the items after it could not all be placed otherwise. It notes in stored what is in
// each item's way at its unit. None fits: POOL_FULL, naming the item the search could not
// get past, when the candidates are every unit of the pool (all); errUnitsGone otherwise. An
// item that the rules of every unit refuse (refused, from candidatesOf) fails with that
// refusal instead, when the candidates are every unit.
func chooseUnits(rs []*reservation.Reservation, pooled []bool, candidates map[*reservation.Reservation][]*reservation.Reservation, refused map[*reservation.Reservation]error,
	stored blockers, policy func(string) reservation.Policy, others map[string][]*reservation.Reservation, all bool) error {
	// Every direct item of the call is in the way, wherever it stands in the call, and so is
	// each pooled item once it has its unit; those to come have none yet.
	var placed, items []int
	for i := range rs {
		if pooled[i] {
			items = append(items, i)
			rs[i].ResourceID = ""
		} else {
			placed = append(placed, i)
		}
	}
	checks, stuck := 0, 0 // stuck: the furthest item, in items, that found no unit
	var place func(k int) bool
	place = func(k int) bool {
		if k == len(items) {
			return true
		}
		r := rs[items[k]]
		for _, c := range candidates[r] {
			if checks++; checks > maxUnitChoices {
				return false
			}
			held := append(slices.Clone(stored[c]), others[c.ResourceID]...)
			for _, j := range placed {
				held = append(held, rs[j])
			}
			if !reservation.Fits(c, policy(c.ResourceID), held) {
				continue
			}
			r.ResourceID = c.ResourceID
			stored[r] = stored[c]
			placed = append(placed, items[k])
			if place(k + 1) {
				return true
			}
			placed = placed[:len(placed)-1]
			r.ResourceID = ""
		}
		stuck = max(stuck, k)
		return false
	}
	if place(0) {
		return nil
	}
	for _, i := range items {
		rs[i].ResourceID = ""
	}
	if !all {
		return errUnitsGone
	}
	for _, i := range items {
		if err := refused[rs[i]]; err != nil {
			return err
		}
	}
	return reservation.PoolFull(items[stuck], rs[items[stuck]])
}
