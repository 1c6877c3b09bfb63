package reservation

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"
	"time"
)

// ErrOutsideView is what a ViewSource answers when its view does not hold what a search
// needs (a window that begins before the index's horizon): the database must answer.
var ErrOutsideView = errors.New("the read index does not hold this window")

// ViewSource is a search's AvailabilitySource over a read index's view: the catalogue the view
// holds, and its live reservations (holds lapsed at the view's clock left out, as Booked
// leaves them out). Search judges the windows by the same rules for either source.
func ViewSource(v ReadView) AvailabilitySource { return viewSource{v} }

type viewSource struct{ v ReadView }

func (s viewSource) SearchResources(_ context.Context, pool, after string, limit int) ([]*Resource, error) {
	all := s.v.Resources()
	if pool != "" {
		all = s.v.Pool(pool)
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].ID > after })
	return all[i:min(len(all), i+max(limit, 0))], nil
}

func (s viewSource) Booked(_ context.Context, spans []Span, _ time.Time, limit int) ([]*Reservation, error) {
	var out []*Reservation
	for _, sp := range spans {
		got, ok := s.v.Overlapping([]string{sp.ResourceID}, sp.Start, sp.End)
		if !ok {
			return nil, ErrOutsideView
		}
		out = append(out, got[sp.ResourceID]...)
	}
	slices.SortFunc(out, func(a, b *Reservation) int {
		return cmp.Or(cmp.Compare(a.ResourceID, b.ResourceID), a.Start.Compare(b.Start), cmp.Compare(a.ID, b.ID))
	})
	out = slices.CompactFunc(out, func(a, b *Reservation) bool { return a.ID == b.ID }) // spans of one resource may meet
	if len(out) > limit+1 {
		out = out[:limit+1]
	}
	return out, nil
}
