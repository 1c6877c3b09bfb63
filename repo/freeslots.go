package repo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// MaxFreeSlotsRows bounds the reservations one FreeSlots reads, of one resource or of all the
// units of a pool. Without it, the work of one call (and the size of its answer) grows with
// the bookings in its window: a year on a pool of 1,000 units booked night by night is
// 366,000 rows, and an answer far past what a gRPC message carries. More is EINVALID on end:
// the caller asks for a shorter window.
const MaxFreeSlotsRows = reservation.MaxFreeSlotsRows

// tooBusy is the error of a FreeSlots whose window holds more than MaxFreeSlotsRows
// reservations.
func tooBusy(what string) error {
	var v reservation.Violations
	v.Add("end", fmt.Sprintf("the window holds more than %d reservations of %s, more than one call reads: ask for a shorter window", MaxFreeSlotsRows, what))
	return v.Err()
}

// poolUnitRow is a pool's unit, with the longest reservation it ever stored (which bounds how far
// before a window the reservations meeting it start).
type poolUnitRow struct {
	resourceRow
	MaxSpan int64 `db:"max_span_us"`
}

// sqlPoolUnitsFree reads a pool's units for FreeSlots.
const sqlPoolUnitsFree = "SELECT " + resourceColumns + ", max_span_us FROM resources WHERE pool_id = ? ORDER BY id"

// poolFree returns the free windows of each enabled unit of pool q.PoolID, in two statements
// whatever the number of units: one reads the units, one the live reservations of all of them
// that meet their windows (each unit's own window, cut to its booking rules, widened by its
// buffers), at most MaxFreeSlotsRows of them.
func (s *Store) poolFree(ctx context.Context, q reservation.SlotQuery, now time.Time) ([]reservation.Window, error) {
	var rows []poolUnitRow
	if err := sqlx.SelectContext(ctx, s.db, &rows, sqlPoolUnitsFree, q.PoolID); err != nil {
		return nil, classify(fmt.Errorf("free slots of pool %s: units: %w", q.PoolID, err))
	}
	type unit struct {
		id string
		q  reservation.SlotQuery
		p  reservation.Policy
	}
	var units []unit
	var where []string
	args := []any{now}
	for i := range rows {
		u, err := rows[i].resource()
		if err != nil {
			return nil, err
		}
		uq, p, ok := reservation.UnitQuery(q, u, now)
		if !ok {
			continue
		}
		g := p.Gap()
		units = append(units, unit{u.ID, uq, p})
		// The reservations of the unit whose window meets uq's widened by g: each one's own
		// range of the (resource_id, start_at) index.
		where = append(where, "(r.resource_id = ? AND r.start_at >= ? AND r.start_at < ? AND r.end_at > ?)")
		from := uq.Start.Add(-g)
		args = append(args, u.ID, from.Add(-time.Duration(rows[i].MaxSpan)*time.Microsecond), uq.End.Add(g), from)
	}
	if len(units) == 0 {
		return nil, nil
	}
	query := "SELECT " + prefixed("r.", columns) + " FROM reservations r WHERE " + notLapsed("r.") +
		" AND (" + strings.Join(where, " OR ") + ") ORDER BY r.resource_id, r.start_at, r.id LIMIT ?"
	args = append(args, MaxFreeSlotsRows+1)
	busy, err := selectRows(ctx, s.db, query, args...)
	if err != nil {
		return nil, classify(fmt.Errorf("free slots of pool %s: reservations: %w", q.PoolID, err))
	}
	if len(busy) > MaxFreeSlotsRows {
		return nil, tooBusy("pool " + q.PoolID)
	}
	byUnit := map[string][]*reservation.Reservation{}
	for _, r := range busy {
		byUnit[r.ResourceID] = append(byUnit[r.ResourceID], r)
	}
	var out []reservation.Window
	for _, u := range units {
		for _, w := range reservation.FreePlaces(u.q, u.p, byUnit[u.id]) {
			w.ResourceID = u.id
			out = append(out, w)
		}
	}
	return out, nil
}
