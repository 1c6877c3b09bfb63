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
// when read. (With a read index, the first try reads from memory, at most
// poolMemoryStaleness behind: poolmemory.go.) Pool calls are not prechecked nor refused from
// the conflict cache: the read is their precheck.
//
// A unit whose booking rules (Rules.Check) refuse an item's window at the call's time is no
// candidate for it. When every enabled unit of the pool refuses it so, the call is refused
// with that RULE_VIOLATION (naming the first unit, by id), not POOL_FULL: no unit would ever
// take that window then, however many are free.

const sqlPoolUnits = "SELECT id, pool_id FROM resources WHERE pool_id IN (?) ORDER BY id"

const (
	// optimisticTries bounds how often a pool call locks only the units a read found free
	// before it locks every unit of its pools. A try lost is a try other calls won (they
	// took the units read free), and a read costs a page of units; locking every unit costs
	// a row per unit. With 3 tries, 16 concurrent calls on one window of a pool of 1,000 free
	// units read 7,276 rows, most of them by calls that fell back to every unit; with 16, 233
	// to 326 (TestConcurrentPoolBookingsReadNotEveryUnit), and rsvbench pool at 1,000 units
	// booked 36 ok/s against 4, reading 5 KB per reservation against 187 KB.
	optimisticTries = 16
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

// pickUnits is the pipeline's pick step: it chooses the units j's pooled items may take, and
// so the resources j locks. The first try takes them from the read index when the Store has
// one (freeUnitsInMemory). The first optimisticTries tries otherwise read, without locks, the
// first unitsPerTry units each item looks free on (freeUnits); a try that finds an item none, and
// every try after them, takes every unit of the item's pool, which only then may answer
// POOL_FULL.
func (s *Store) pickUnits(ctx context.Context, j *job, try int) error {
	unassign(j.rs, j.pooled)
	var p pick
	if try == 0 {
		p.units, _ = s.freeUnitsInMemory(ctx, j.rs, j.pooled)
	}
	if p.units == nil && try < optimisticTries {
		free, err := s.freeUnits(ctx, j.rs, j.pooled)
		if err != nil {
			return err
		}
		p.units = free
	}
	if p.units == nil {
		var pools []string
		for i, r := range j.rs {
			if j.pooled[i] {
				pools = append(pools, r.PoolID)
			}
		}
		units, err := s.poolUnits(ctx, pools)
		if err != nil {
			return err
		}
		p = pick{units: units, all: true}
	}
	j.pick, j.keys = p, pooledKeys(j.rs, j.pooled, p)
	if len(j.keys) == 0 {
		first := slices.Index(j.pooled, true)
		return reservation.PoolFull(first, j.rs[first])
	}
	return nil
}

// sqlFreeUnits reads, by the (pool_id, id) index from a unit id on, the enabled units of a pool
// that a window looks free on: those of capacity above 1 (FreeUnits weighs their reservations),
// and those of capacity 1 where no live reservation's blocked window meets the window's (the
// placeholders: the window's start, end and start, then now). The reservations are looked for
// as findInTheWay does, in one range of the (resource_id, start_at) index per unit, bounded by
// the unit's longest span and buffers; those stored are so exactly the ones in the way, and a
// unit skipped is taken.
const sqlFreeUnits = "SELECT u.id, u.pool_id, u.max_span_us, u.capacity, u.disabled, " +
	"u.buffer_before_us, u.buffer_after_us, u.min_duration_us, u.max_duration_us, u.min_notice_us, u.max_advance_us" +
	" FROM resources u WHERE u.pool_id = ? AND u.id > ? AND u.disabled = 0 AND (u.capacity > 1 OR NOT EXISTS (SELECT 1 FROM reservations r" +
	" WHERE r.resource_id = u.id AND r.start_at >= ? - INTERVAL (u.max_span_us + u.buffer_before_us + u.buffer_after_us) MICROSECOND" +
	" AND r.start_at < ? + INTERVAL (u.buffer_before_us + u.buffer_after_us) MICROSECOND" +
	" AND r.end_at > ? - INTERVAL (u.buffer_before_us + u.buffer_after_us) MICROSECOND AND " + "(r.expires_at IS NULL OR r.expires_at > ?)" +
	")) ORDER BY u.id LIMIT ?"

const (
	// freeUnitsPage is how many units one read of sqlFreeUnits returns.
	freeUnitsPage = 2 * unitsPerTry
	// freeUnitsPages bounds the reads of sqlFreeUnits for one pooled item: a unit the read
	// offers may yet refuse the item (its booking rules, its capacity, the call's other
	// items). Past it, the call takes every unit of the pool.
	freeUnitsPages = 4
)

// freeUnits reads, without locks, the first unitsPerTry units of each pooled item's pool that
// its window fits on, by id, beside what is stored there and the call's direct items: the
// units the call locks and chooses among. It is nil when an item has none: the pool looks full
// (or its free units refuse the item), and the call takes every unit. Its cost does not grow
// with the pool: each read returns freeUnitsPage units at most, which the database finds by
// index, and a unit of capacity 1 needs no other read.
func (s *Store) freeUnits(ctx context.Context, rs []*reservation.Reservation, pooled []bool) (map[string][]string, error) {
	now := s.now()
	direct := directItems(rs, pooled)
	free := map[string][]string{}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		n, after := 0, ""
		for page := 0; n < unitsPerTry && page < freeUnitsPages; page++ {
			rows, err := s.freeUnitRows(ctx, r, after, now)
			if err != nil {
				return nil, err
			}
			// The units of capacity above 1 are weighed by what is stored on them.
			var weigh []*reservation.Reservation
			cands := make([]*reservation.Reservation, 0, len(rows))
			for _, u := range rows {
				c := *r
				c.ResourceID = u.ID
				if u.rules.Check(i, &c, now) != nil {
					c.ResourceID = "" // no candidate
				} else if u.capacity > 1 {
					weigh = append(weigh, &c)
				}
				cands = append(cands, &c)
			}
			stored := blockers{}
			if len(weigh) > 0 {
				if stored, err = findInTheWay(ctx, s.db, s.opts.MaxConflicts, resourceMap(rows), now, weigh); err != nil {
					return nil, classify(err)
				}
			}
			for k, c := range cands {
				if n < unitsPerTry && c.ResourceID != "" && reservation.Fits(c, rows[k].policy(), append(slices.Clone(stored[c]), direct...)) {
					free[r.PoolID] = append(free[r.PoolID], c.ResourceID)
					n++
				}
			}
			if len(rows) < freeUnitsPage {
				break // the end of the pool
			}
			after = rows[len(rows)-1].ID
		}
		if n == 0 {
			return nil, nil
		}
	}
	sortUnits(free)
	return free, nil
}

// directItems are the items of rs booked on a resource they name, not through a pool.
func directItems(rs []*reservation.Reservation, pooled []bool) []*reservation.Reservation {
	var direct []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			direct = append(direct, r)
		}
	}
	return direct
}

// sortUnits sorts each pool's units in free by id, once each.
func sortUnits(free map[string][]string) {
	for pool, us := range free {
		slices.Sort(us)
		free[pool] = slices.Compact(us)
	}
}

// unitRow is a unit sqlFreeUnits read.
type unitRow struct {
	ID string
	*resource
}

// resourceMap is rows by id.
func resourceMap(rows []unitRow) map[string]*resource {
	m := make(map[string]*resource, len(rows))
	for _, u := range rows {
		m[u.ID] = u.resource
	}
	return m
}

// freeUnitRows reads one page of sqlFreeUnits for r, from after on.
func (s *Store) freeUnitRows(ctx context.Context, r *reservation.Reservation, after string, now time.Time) ([]unitRow, error) {
	var rows []struct {
		ID       string `db:"id"`
		PoolID   string `db:"pool_id"`
		MaxSpan  int64  `db:"max_span_us"`
		Capacity int    `db:"capacity"`
		Disabled bool   `db:"disabled"`
		rulesRow
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, sqlFreeUnits, r.PoolID, after, r.Start, r.End, r.Start, now, freeUnitsPage); err != nil {
		return nil, classify(fmt.Errorf("free units of pool %q: %w", r.PoolID, err))
	}
	out := make([]unitRow, len(rows))
	for i, u := range rows {
		out[i] = unitRow{u.ID, &resource{maxSpan: time.Duration(u.MaxSpan) * time.Microsecond, capacity: max(u.Capacity, 1), disabled: u.Disabled, poolID: u.PoolID, rules: u.rules()}}
	}
	return out, nil
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

// poolUnits reads, without locks, the units of the pools, by pool and id. The rows are read
// once locked.
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
	units := map[string][]string{}
	for _, r := range rows {
		units[r.PoolID] = append(units[r.PoolID], r.ID)
	}
	return units, nil
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
