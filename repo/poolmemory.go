package repo

import (
	"context"
	"slices"
	"time"

	"reservation"
)

// Pool units from memory. A replica's read index (UseIndex) holds the pools and their
// reservations: a pool call's first try takes its units from there instead of the
// database's read (freeUnits), whose cost grows with the units taken before the first free
// one (a correlated look at the reservations of each). The units so chosen are a read
// without locks like any other: admit checks them again under the locks, and a try they fail
// reads the database.

const (
	// unitsInMemory is how many of the units the index finds free for a pooled item the call
	// locks. More than unitsPerTry: concurrent calls are offered the same first free units,
	// and the index, which follows the feed, learns of the units they take a little later.
	unitsInMemory = 2 * unitsPerTry
	// poolMemoryStaleness bounds the age of the index's view a pick is made from.
	poolMemoryStaleness = time.Second
)

// indexRef holds the read index a Store picks pool units from.
type indexRef struct{ reservation.ReadIndex }

// UseIndex has the Store pick the units of a pool call's first try from x, the replica's read
// index, made after the Store (it follows the Store's feed). Call it before the Store serves.
func (s *Store) UseIndex(x reservation.ReadIndex) { s.index.Store(&indexRef{x}) }

// freeUnitsInMemory is freeUnits answered by the read index: for each pooled item of rs, the
// first unitsInMemory units by id that are enabled, whose booking rules take the item and
// whose reservations (and the call's direct items) leave room for it. ok is false when there
// is no index, it cannot answer, or an item has no such unit: the database's read decides.
func (s *Store) freeUnitsInMemory(ctx context.Context, rs []*reservation.Reservation, pooled []bool) (free map[string][]string, ok bool) {
	x := s.index.Load()
	if x == nil {
		return nil, false
	}
	v, ok := x.View(ctx, reservation.ReadOptions{Consistency: reservation.ConsistencyBounded, MaxStaleness: poolMemoryStaleness}, true)
	if !ok {
		return nil, false
	}
	now := s.now()
	var direct []*reservation.Reservation
	for i, r := range rs {
		if !pooled[i] {
			direct = append(direct, r)
		}
	}
	free = map[string][]string{}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		n := 0
		for _, u := range v.Pool(r.PoolID) {
			if n == unitsInMemory {
				break
			}
			c := *r
			c.ResourceID = u.ID
			if u.Disabled || u.Check(i, &c, now) != nil {
				continue
			}
			p := reservation.PolicyOf(u)
			held, ok := v.Overlapping([]string{u.ID}, r.Start.Add(-p.Gap()), r.End.Add(p.Gap()))
			if !ok {
				return nil, false
			}
			if reservation.Fits(&c, p, append(held[u.ID], direct...)) {
				free[r.PoolID] = append(free[r.PoolID], u.ID)
				n++
			}
		}
		if n == 0 {
			return nil, false
		}
	}
	for pool, us := range free {
		slices.Sort(us)
		free[pool] = slices.Compact(us)
	}
	s.stats.unitsFromMemory.Add(1)
	return free, true
}
