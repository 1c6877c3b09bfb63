package readindex

import (
	"context"
	"slices"
	"time"

	"reservation"
)

// position is the view's position now: the feed's seq applied and the instant before which
// every change is held. The feed's part is the newest moment the poller found the head at or
// before the seq applied, held back by the health watchdog's floor (a change that waits for
// its seq) and by the load (nothing before the index is current); with catalogue, also by
// the catalogue's last look. The caller holds x.mu (read).
func (x *Index) position(catalogue bool) reservation.ReadPosition {
	pos := reservation.ReadPosition{Seq: x.applied, FromMemory: true}
	mark := x.feed.MarkAt(x.applied)
	if !mark.At.After(x.loadEnd) {
		return pos // not known to be current since the load
	}
	asOf := mark.At
	h := x.feed.Health()
	if h.Err != nil {
		return pos
	}
	if f := h.Floor(); !f.IsZero() && f.Before(asOf) {
		asOf = f
	}
	if catalogue {
		x.catMu.RLock()
		cat, ready := x.catAsOf, x.catReady
		x.catMu.RUnlock()
		if !ready {
			return pos
		}
		if cat.Before(asOf) {
			asOf = cat
		}
	}
	pos.AsOf = asOf
	return pos
}

// current reports whether the index has applied a feed position the poller found to be the
// head after the index's load ended. The caller holds x.mu (read).
func (x *Index) current() bool {
	return !x.loadEnd.IsZero() && x.feed.MarkAt(x.applied).At.After(x.loadEnd)
}

// View gives a view that satisfies opt, or false for the database to answer: see
// reservation.ReadIndex.
func (x *Index) View(ctx context.Context, opt reservation.ReadOptions, catalogue bool) (reservation.ReadView, bool) {
	if !opt.Memory() {
		return nil, false
	}
	switch opt.Consistency {
	case reservation.ConsistencyBounded:
		x.mu.RLock()
		ok := x.current()
		pos := x.position(catalogue)
		x.mu.RUnlock()
		now := x.opts.Now()
		if !ok || pos.AsOf.IsZero() || now.Sub(pos.AsOf) > opt.MaxStaleness {
			return nil, false
		}
		return x.view(pos, now), true
	case reservation.ConsistencyReadYourWrites:
		return x.waitFor(ctx, opt.Token, catalogue)
	}
	return nil, false
}

// waitFor gives a view that holds what t names, waiting up to Options.Wait for the feed to
// bring it; the resources it names that the catalogue lacks are read at once.
func (x *Index) waitFor(ctx context.Context, t reservation.ConsistencyToken, catalogue bool) (reservation.ReadView, bool) {
	timer := time.NewTimer(x.opts.Wait)
	defer timer.Stop()
	fetched := false
	for {
		x.mu.RLock()
		ok := x.current() && x.holds(t)
		pos := x.position(catalogue)
		changed := x.changed
		x.mu.RUnlock()
		if ok && x.holdsResources(t) {
			return x.view(pos, x.opts.Now()), true
		}
		if !fetched {
			fetched = true
			if !x.fetchResources(ctx, t) {
				return nil, false
			}
			continue
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}

// holds reports whether every reservation t names is held at its version or later, or was
// brought by the feed lately at it (a cancel, one outside the horizon). The caller holds x.mu.
func (x *Index) holds(t reservation.ConsistencyToken) bool {
	for _, w := range t.Reservations {
		if r := x.byID[w.ID]; r != nil && r.Version >= w.Version {
			continue
		}
		if x.recent[w.ID] >= w.Version {
			continue
		}
		return false
	}
	return true
}

// holdsResources reports whether the catalogue holds every resource t names at its version.
func (x *Index) holdsResources(t reservation.ConsistencyToken) bool {
	x.catMu.RLock()
	defer x.catMu.RUnlock()
	for _, w := range t.Resources {
		if r := x.catalog[w.ID]; r == nil || r.Version < w.Version {
			return false
		}
	}
	return true
}

// fetchResources reads the resources t names that the catalogue lacks at their version, and
// reports false when one cannot be read.
func (x *Index) fetchResources(ctx context.Context, t reservation.ConsistencyToken) bool {
	for _, w := range t.Resources {
		x.catMu.RLock()
		r := x.catalog[w.ID]
		x.catMu.RUnlock()
		if r != nil && r.Version >= w.Version {
			continue
		}
		got, err := x.src.GetResource(ctx, w.ID)
		if err != nil {
			return false
		}
		x.putResource(got)
	}
	return true
}

func (x *Index) view(pos reservation.ReadPosition, now time.Time) *view {
	x.served.Add(1)
	return &view{x: x, pos: pos, now: reservation.Truncate(now)}
}

// view is a ReadView of an Index: what it holds when each method runs, which is as of pos or
// later.
type view struct {
	x   *Index
	pos reservation.ReadPosition
	now time.Time
}

func (v *view) Position() reservation.ReadPosition { return v.pos }
func (v *view) Now() time.Time                     { return v.now }

func (v *view) Get(id string) (*reservation.Reservation, bool) {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	r := v.x.byID[id]
	if r == nil {
		return nil, false
	}
	c := *r
	return &c, true
}

// live reports whether r is not a hold lapsed at now, as the database's notLapsed judges.
func live(r *reservation.Reservation, now time.Time) bool {
	return r.ExpiresAt.IsZero() || r.ExpiresAt.After(now)
}

func (v *view) Find(f reservation.Filter) ([]*reservation.Reservation, bool) {
	x := v.x
	x.mu.RLock()
	defer x.mu.RUnlock()
	if f.Start.IsZero() || f.Start.Before(x.cut) {
		return nil, false
	}
	var l *list
	switch {
	case f.ResourceID != "":
		l = x.byRes[f.ResourceID]
	case f.UserID != "":
		l = x.byUser[f.UserID]
	default:
		return nil, false
	}
	var out []*reservation.Reservation
	if l == nil {
		return out, true
	}
	from := f.Start.Add(-l.maxSpan)
	if c := f.After; c != nil && !f.Desc && c.Start.After(from) {
		from = c.Start
	}
	i, _ := slices.BinarySearchFunc(l.rs, from, func(r *reservation.Reservation, t time.Time) int { return r.Start.Compare(t) })
	for ; i < len(l.rs); i++ {
		r := l.rs[i]
		if !f.End.IsZero() && !r.Start.Before(f.End) {
			break
		}
		if !r.End.After(f.Start) || !live(r, v.now) ||
			(f.ResourceID != "" && r.ResourceID != f.ResourceID) || (f.UserID != "" && r.UserID != f.UserID) ||
			(f.Status != reservation.StatusUnknown && r.Status != f.Status) || !afterCursor(r, f) {
			continue
		}
		out = append(out, r)
		if !f.Desc && f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	if f.Desc {
		slices.Reverse(out)
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	for i, r := range out {
		c := *r
		out[i] = &c
	}
	return out, true
}

// afterCursor reports whether r comes after f's cursor in f's order.
func afterCursor(r *reservation.Reservation, f reservation.Filter) bool {
	c := f.After
	if c == nil {
		return true
	}
	k := byStart(r, &reservation.Reservation{Start: c.Start, ID: c.ID})
	if f.Desc {
		return k < 0
	}
	return k > 0
}

func (v *view) Overlapping(ids []string, start, end time.Time) (map[string][]*reservation.Reservation, bool) {
	out := make(map[string][]*reservation.Reservation, len(ids))
	for _, id := range ids {
		rs, ok := v.Find(reservation.Filter{ResourceID: id, Start: start, End: end})
		if !ok {
			return nil, false
		}
		out[id] = rs
	}
	return out, true
}

func (v *view) Resource(id string) (*reservation.Resource, bool) {
	v.x.catMu.RLock()
	defer v.x.catMu.RUnlock()
	r := v.x.catalog[id]
	return r, r != nil
}

// Pool and Resources share the index's slices, which are replaced, never changed, when the
// catalogue is read again: callers must not change them.
func (v *view) Pool(id string) []*reservation.Resource {
	v.x.catMu.RLock()
	defer v.x.catMu.RUnlock()
	return v.x.pools[id]
}

func (v *view) Resources() []*reservation.Resource {
	v.x.catMu.RLock()
	defer v.x.catMu.RUnlock()
	return v.x.sorted
}
