package repo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// The database side of SearchAvailability (reservation.Search): the catalogue by id, and the
// live reservations of a batch of candidates, each read in one statement. This is the
// consistency STRONG answer: it reads what is committed.

var _ reservation.AvailabilitySource = (*Store)(nil)

// SearchResources returns up to limit resources after the id after, by id: the units of pool,
// or with pool "" the whole catalogue. It reads by the primary key (or the pool_id index).
func (s *Store) SearchResources(ctx context.Context, pool, after string, limit int) ([]*reservation.Resource, error) {
	rs, err := s.ListResources(ctx, reservation.ResourceFilter{PoolID: pool, After: after, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("search the catalogue after %q: %w", after, err)
	}
	return rs, nil
}

// Booked returns the reservations live at now on each span's resource whose booked window
// overlaps the span, by resource, start and id, in one statement: one range of the
// (resource_id, start_at) index per span, bounded below by the resource's longest stored
// reservation (its row, joined as a constant, as findQuery bounds a Find), each limited to
// limit+1 rows, so that the whole answer stops soon past limit.
func (s *Store) Booked(ctx context.Context, spans []reservation.Span, now time.Time, limit int) ([]*reservation.Reservation, error) {
	if len(spans) == 0 {
		return nil, nil
	}
	parts := make([]string, len(spans))
	args := make([]any, 0, 7*len(spans))
	for i, sp := range spans {
		parts[i] = "(SELECT " + prefixed("r.", columns) + " FROM reservations r JOIN resources s ON s.id = r.resource_id" +
			" WHERE s.id = ? AND r.resource_id = ? AND r.start_at >= ? - INTERVAL s.max_span_us MICROSECOND" +
			" AND r.start_at < ? AND r.end_at > ? AND " + notLapsed("r.") + " ORDER BY r.start_at, r.id LIMIT ?)"
		args = append(args, sp.ResourceID, sp.ResourceID, sp.Start, sp.End, sp.Start, now, limit+1)
	}
	query := strings.Join(parts, " UNION ALL ")
	if len(parts) == 1 {
		query = strings.TrimSuffix(strings.TrimPrefix(query, "("), ")")
	}
	var rows []row
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("reservations of %d resources searched: %w", len(spans), err))
	}
	out := make([]*reservation.Reservation, len(rows))
	for i := range rows {
		out[i] = rows[i].reservation()
	}
	// UNION ALL keeps no order across its parts.
	slices.SortFunc(out, func(a, b *reservation.Reservation) int {
		if c := strings.Compare(a.ResourceID, b.ResourceID); c != 0 {
			return c
		}
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// SearchAvailability answers a search from the database at the store's clock (the clock its
// writes check the rules by).
func (s *Store) SearchAvailability(ctx context.Context, q reservation.SearchQuery) (*reservation.SearchPage, error) {
	return reservation.Search(ctx, s, q, s.now())
}
