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
	// unitsPerLook is how many units one read of the view looks at.
	unitsPerLook = 32
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
	direct := directItems(rs, pooled)
	free = map[string][]string{}
	for i, r := range rs {
		if !pooled[i] {
			continue
		}
		n := 0
		units := v.Pool(r.PoolID)
		// The units are looked at in chunks, each with one read of the view over the widest
		// blocked window of its units.
		for from := 0; from < len(units) && n < unitsInMemory; from += unitsPerLook {
			chunk := units[from:min(from+unitsPerLook, len(units))]
			ids := make([]string, 0, len(chunk))
			var gap time.Duration
			for _, u := range chunk {
				if !u.Disabled {
					ids = append(ids, u.ID)
					gap = max(gap, reservation.PolicyOf(u).Gap())
				}
			}
			held, ok := v.Overlapping(ids, r.Start.Add(-gap), r.End.Add(gap))
			if !ok {
				return nil, false
			}
			for _, u := range chunk {
				c := *r
				c.ResourceID = u.ID
				if n == unitsInMemory || u.Disabled || u.Check(i, &c, now) != nil {
					continue
				}
				if reservation.Fits(&c, reservation.PolicyOf(u), append(s.alsoTaken(&c, held[u.ID]), direct...)) {
					free[r.PoolID] = append(free[r.PoolID], u.ID)
					n++
				}
			}
		}
		if n == 0 {
			return nil, false
		}
	}
	sortUnits(free)
	s.stats.unitsFromMemory.Add(1)
	return free, true
}

// alsoTaken returns held, the reservations the index holds in the way of c, with those Taken
// remembers there that held lacks: this replica's own commits reach Taken as they commit, and
// the index only once the feed brings them, so concurrent pool calls would otherwise be
// offered the units the calls just before them took.
func (s *Store) alsoTaken(c *reservation.Reservation, held []*reservation.Reservation) []*reservation.Reservation {
	if s.opts.Taken == nil {
		return held
	}
	var more []*reservation.Reservation
	for _, t := range s.opts.Taken.Overlapping(c) {
		if !slices.ContainsFunc(held, func(h *reservation.Reservation) bool { return h.ID == t.ID }) {
			more = append(more, t)
		}
	}
	if more == nil {
		return held
	}
	return append(slices.Clone(held), more...)
}
