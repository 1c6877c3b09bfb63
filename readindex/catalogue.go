package readindex

import (
	"context"
	"slices"
	"strings"
	"time"

	"reservation"
)

// The catalogue is not on the change feed: the index looks at its mark (count and sum of
// versions) every CatalogueInterval, and reads it again whenever the mark moved. A look that
// finds the mark unchanged vouches for the catalogue as of the instant it began. While the
// mark keeps moving (an open catalogue gains a resource with each first booking of it), the
// reads back off, up to maxCatalogueSkip looks apart: each reads the whole catalogue, and one
// that the mark moved under is thrown away.

const cataloguePage = 1000

// maxCatalogueSkip is how many looks apart the catalogue's reads are at most while its mark
// keeps moving: 4 s at the default CatalogueInterval. Reading it at every look cost the
// replica 14 % of its CPU during rsvbench spread, which adds a resource every few ms, and
// every one of those reads was thrown away.
const maxCatalogueSkip = 15

// watchCatalogue keeps the catalogue up to date until ctx ends, and prunes the reservations
// past the horizon now and then.
func (x *Index) watchCatalogue(ctx context.Context) {
	t := time.NewTicker(x.opts.CatalogueInterval)
	defer t.Stop()
	mark := ""
	lastPrune := x.opts.Now()
	streak, skip := 0, 0 // reads in a row that found the mark moved; looks to let pass before the next
	for {
		began := x.opts.Now()
		now, err := x.src.CatalogueMark(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				x.log.WarnContext(ctx, "read index: looking at the catalogue failed", "err", err)
			}
		case now == mark:
			streak, skip = 0, 0
			x.catMu.Lock()
			x.catAsOf = began
			x.catMu.Unlock()
		case skip > 0:
			skip--
		default:
			streak++
			skip = min(1<<min(streak-1, 8), maxCatalogueSkip+1) - 1 // 0, 1, 3, 7, 15 looks
			if kept, err := x.loadCatalogue(ctx, now); err != nil {
				if ctx.Err() == nil {
					x.log.WarnContext(ctx, "read index: reading the catalogue failed", "err", err)
				}
			} else if kept {
				mark = now
				x.catMu.Lock()
				x.catAsOf = began
				x.catMu.Unlock()
			}
		}
		if began.Sub(lastPrune) > pruneEvery {
			lastPrune = began
			x.mu.Lock()
			x.prune(began)
			x.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// loadCatalogue reads the whole catalogue, in pages by id, and keeps it if the mark read
// after it is still before (no resource was put meanwhile, so the pages are of one state);
// kept says whether it was.
func (x *Index) loadCatalogue(ctx context.Context, before string) (kept bool, err error) {
	var all []*reservation.Resource
	after := ""
	for {
		page, err := x.src.ListResources(ctx, reservation.ResourceFilter{After: after, Limit: cataloguePage})
		if err != nil {
			return false, err
		}
		all = append(all, page...)
		if len(page) < cataloguePage {
			break
		}
		after = page[len(page)-1].ID
	}
	mark, err := x.src.CatalogueMark(ctx)
	if err != nil {
		return false, err
	}
	if mark != before {
		return false, nil // read again at the next look, which finds the mark moved
	}
	byID := make(map[string]*reservation.Resource, len(all))
	for _, r := range all {
		byID[r.ID] = r
	}
	x.catMu.Lock()
	defer x.catMu.Unlock()
	// A resource fetched for a token meanwhile may be newer than what was read.
	for id, r := range x.catalog {
		if cur := byID[id]; cur == nil || cur.Version < r.Version {
			byID[id] = r
		}
	}
	x.catalog = byID
	x.sorted, x.pools = sortedOf(byID), poolsOf(byID)
	x.catReady = true
	return true, nil
}

// sortedOf is the catalogue by id, made once per change of it: a search reads it in pages.
func sortedOf(byID map[string]*reservation.Resource) []*reservation.Resource {
	out := make([]*reservation.Resource, 0, len(byID))
	for _, r := range byID {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *reservation.Resource) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func poolsOf(byID map[string]*reservation.Resource) map[string][]*reservation.Resource {
	pools := map[string][]*reservation.Resource{}
	for _, r := range byID {
		if r.PoolID != "" {
			pools[r.PoolID] = append(pools[r.PoolID], r)
		}
	}
	for _, units := range pools {
		slices.SortFunc(units, func(a, b *reservation.Resource) int { return strings.Compare(a.ID, b.ID) })
	}
	return pools
}

// putResource takes in r, read for a token, if it is newer than what is held.
func (x *Index) putResource(r *reservation.Resource) {
	x.catMu.Lock()
	defer x.catMu.Unlock()
	if cur := x.catalog[r.ID]; cur != nil && cur.Version >= r.Version {
		return
	}
	if x.catalog == nil {
		x.catalog = map[string]*reservation.Resource{}
	}
	x.catalog[r.ID] = r
	x.sorted, x.pools = sortedOf(x.catalog), poolsOf(x.catalog)
}
