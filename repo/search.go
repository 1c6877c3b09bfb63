package repo

import (
	"context"
	"fmt"
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

// sqlMaxSpans reads the longest reservation each resource ever stored, which bounds how far
// before a window the reservations that meet it start.
const sqlMaxSpans = "SELECT id, max_span_us FROM resources WHERE id IN (?)"

// Booked returns the reservations live at now on each span's resource whose booked window
// overlaps the span, by resource, start and id, in two statements whatever the number of
// spans: one reads the resources' longest reservations, one the reservations, in one range of
// the (resource_id, start_at) index per span, from its start less the resource's longest
// reservation (as poolFree reads a pool's), at most limit+1 of them.
func (s *Store) Booked(ctx context.Context, spans []reservation.Span, now time.Time, limit int) ([]*reservation.Reservation, error) {
	if len(spans) == 0 {
		return nil, nil
	}
	ids := make([]string, len(spans))
	for i, sp := range spans {
		ids[i] = sp.ResourceID
	}
	query, args, err := sqlx.In(sqlMaxSpans, ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID      string `db:"id"`
		MaxSpan int64  `db:"max_span_us"`
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("longest reservations of %d resources searched: %w", len(ids), err))
	}
	maxSpan := make(map[string]time.Duration, len(rows))
	for _, r := range rows {
		maxSpan[r.ID] = time.Duration(r.MaxSpan) * time.Microsecond
	}
	var where []string
	args = []any{now}
	for _, sp := range spans {
		span, ok := maxSpan[sp.ResourceID]
		if !ok {
			continue // no row, no reservation
		}
		where = append(where, "(r.resource_id = ? AND r.start_at >= ? AND r.start_at < ? AND r.end_at > ?)")
		args = append(args, sp.ResourceID, sp.Start.Add(-span), sp.End, sp.Start)
	}
	if len(where) == 0 {
		return nil, nil
	}
	query = "SELECT " + prefixed("r.", columns) + " FROM reservations r WHERE " + notLapsed("r.") +
		" AND (" + strings.Join(where, " OR ") + ") ORDER BY r.resource_id, r.start_at, r.id LIMIT ?"
	out, err := selectRows(ctx, s.db, query, append(args, limit+1)...)
	if err != nil {
		return nil, classify(fmt.Errorf("reservations of %d resources searched: %w", len(spans), err))
	}
	return out, nil
}

// SearchAvailability answers a search from the database at the store's clock (the clock its
// writes check the rules by).
func (s *Store) SearchAvailability(ctx context.Context, q reservation.SearchQuery) (*reservation.SearchPage, error) {
	return reservation.Search(ctx, s, q, s.now())
}
