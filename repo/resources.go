package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// The catalogue: the resources table's descriptive columns (migration 00004) beside the lock
// row every write takes. A resource's catalogue version (catalogue_version) is bumped by
// PutResource alone; its version column stays the write counter of the change feed.

const resourceColumns = "id, pool_id, capacity, time_zone, display_name, labels, disabled, catalogue_version, created_at, updated_at"

const (
	sqlGetResource    = "SELECT " + resourceColumns + " FROM resources WHERE id = ?"
	sqlInsertResource = "INSERT INTO resources (id, version, max_span_us, created_at, pool_id, capacity, time_zone, display_name, labels, disabled, catalogue_version, updated_at) VALUES (?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	sqlUpdateResource = "UPDATE resources SET pool_id = ?, capacity = ?, time_zone = ?, display_name = ?, labels = ?, disabled = ?, catalogue_version = ?, updated_at = ? WHERE id = ?"
	sqlCapacities     = "SELECT id, capacity FROM resources WHERE id IN (?)"
	// sqlBooked reads the live reservations of a resource that end after an instant: what a
	// lower capacity must still hold.
	sqlBooked = "SELECT " + columns + " FROM reservations FORCE INDEX (reservations_resource_start) WHERE resource_id = ? AND end_at > ? AND "
)

// resourceRow is a resources row as the catalogue reads it.
type resourceRow struct {
	ID          string     `db:"id"`
	PoolID      string     `db:"pool_id"`
	Capacity    int        `db:"capacity"`
	TimeZone    string     `db:"time_zone"`
	DisplayName string     `db:"display_name"`
	Labels      []byte     `db:"labels"`
	Disabled    bool       `db:"disabled"`
	Version     int64      `db:"catalogue_version"`
	CreatedAt   time.Time  `db:"created_at"`
	UpdatedAt   *time.Time `db:"updated_at"`
}

func (w *resourceRow) resource() (*reservation.Resource, error) {
	r := &reservation.Resource{
		ID: w.ID, PoolID: w.PoolID, Capacity: w.Capacity, TimeZone: w.TimeZone, DisplayName: w.DisplayName,
		Disabled: w.Disabled, Version: w.Version, CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.CreatedAt.UTC(),
	}
	if w.UpdatedAt != nil {
		r.UpdatedAt = w.UpdatedAt.UTC()
	}
	if len(w.Labels) > 0 {
		if err := json.Unmarshal(w.Labels, &r.Labels); err != nil {
			return nil, fmt.Errorf("labels of resource %q: %w", w.ID, err)
		}
	}
	return r, nil
}

// labelsJSON is the labels column of r: NULL for none.
func labelsJSON(labels map[string]string) (any, error) {
	if len(labels) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(labels)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return b, nil
}

func getResource(ctx context.Context, q sqlx.QueryerContext, id, suffix string) (*reservation.Resource, error) {
	var w resourceRow
	err := sqlx.GetContext(ctx, q, &w, sqlGetResource+suffix, id)
	if isNoRows(err) {
		return nil, reservation.ResourceNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	return w.resource()
}

var _ reservation.Catalogue = (*Store)(nil)

// GetResource returns a resource of the catalogue.
func (s *Store) GetResource(ctx context.Context, id string) (*reservation.Resource, error) {
	r, err := getResource(ctx, s.db, id, "")
	if err != nil {
		return nil, classify(err)
	}
	return r, nil
}

// ListResources returns the resources f selects, by id.
func (s *Store) ListResources(ctx context.Context, f reservation.ResourceFilter) ([]*reservation.Resource, error) {
	query := "SELECT " + resourceColumns + " FROM resources WHERE id > ?"
	args := []any{f.After}
	if f.PoolID != "" {
		query += " AND pool_id = ?"
		args = append(args, f.PoolID)
	}
	query += " ORDER BY id"
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	var rows []resourceRow
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, classify(fmt.Errorf("list resources: %w", err))
	}
	out := make([]*reservation.Resource, len(rows))
	for i := range rows {
		r, err := rows[i].resource()
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// PutResource creates or replaces a resource (validated by the caller), holding its row
// locked: the lock every write of the resource takes, so that a capacity is never lowered
// beside a Reserve that counts on the old one.
func (s *Store) PutResource(ctx context.Context, in *reservation.Resource, expected int64) (*reservation.Resource, error) {
	r := *in
	r.Normalize()
	labels, err := labelsJSON(r.Labels)
	if err != nil {
		return nil, err
	}
	var out *reservation.Resource
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		now := s.now()
		cur, err := getResource(ctx, tx, r.ID, " FOR UPDATE")
		if err != nil && reservation.ErrorCode(err) != reservation.ENOTFOUND {
			return err
		}
		var version int64
		if cur != nil {
			version = cur.Version
		}
		if expected != 0 && expected != version {
			return reservation.Errorf(reservation.EABORTED, "resource %q is at version %d, not %d", r.ID, version, expected)
		}
		put := r
		put.Version, put.UpdatedAt = version+1, now
		if cur == nil {
			put.CreatedAt = now
			// A concurrent first Put or Reserve makes this fail with a duplicate key; the
			// transaction is then run again and finds the row.
			_, err = tx.ExecContext(ctx, sqlInsertResource, put.ID, now, put.PoolID, put.Capacity, put.TimeZone, put.DisplayName, labels, put.Disabled, put.Version, now)
		} else {
			put.CreatedAt = cur.CreatedAt
			if cur.PoolID != "" && put.PoolID != cur.PoolID {
				if err := s.leavesPool(ctx, tx, put.ID, cur.PoolID, now); err != nil {
					return err
				}
			}
			if put.Capacity < cur.Capacity {
				if err := s.holdsFewer(ctx, tx, put.ID, put.Capacity, now); err != nil {
					return err
				}
			}
			_, err = tx.ExecContext(ctx, sqlUpdateResource, put.PoolID, put.Capacity, put.TimeZone, put.DisplayName, labels, put.Disabled, put.Version, now, put.ID)
		}
		if err != nil {
			return fmt.Errorf("put resource: %w", err)
		}
		out = &put
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// holdsFewer fails with ESTATE, naming the instant, when more than capacity live
// reservations of the resource overlap at some instant from now on.
func (s *Store) holdsFewer(ctx context.Context, tx *sqlx.Tx, id string, capacity int, now time.Time) error {
	booked, err := selectRows(ctx, tx, sqlBooked+notLapsed("")+" ORDER BY start_at, id", id, now, now)
	if err != nil {
		return fmt.Errorf("reservations booked on resource %q: %w", id, err)
	}
	if len(booked) <= capacity {
		return nil
	}
	var last time.Time
	for _, r := range booked {
		if r.End.After(last) {
			last = r.End
		}
	}
	if at, ok := reservation.FirstFull(now, last, capacity+1, booked); ok {
		n := len(reservation.Covering(at, booked))
		return reservation.Errorf(reservation.ESTATE, "resource %q holds %d reservations at %s: capacity %d is below that", id, n, reservation.FormatTime(at), capacity)
	}
	return nil
}

// leavesPool fails with ESTATE, naming the instant, when the resource holds live
// reservations booked while it was in pool that end after now: a unit leaves its pool only
// once nothing to come was booked through it. (Direct bookings of the unit record the pool
// too, so they hold it in the pool as well: stricter than needed, never an overbooking.)
func (s *Store) leavesPool(ctx context.Context, tx *sqlx.Tx, id, pool string, now time.Time) error {
	booked, err := selectRows(ctx, tx, sqlBooked+"pool_id = ? AND "+notLapsed("")+" ORDER BY start_at, id LIMIT 1", id, now, pool, now)
	if err != nil {
		return fmt.Errorf("reservations of resource %q in pool %q: %w", id, pool, err)
	}
	if len(booked) == 0 {
		return nil
	}
	at := booked[0].Start
	if at.Before(now) {
		at = now
	}
	return reservation.Errorf(reservation.ESTATE, "resource %q holds reservation %s booked in pool %q at %s: it cannot leave the pool before that ends", id, booked[0].ID, pool, reservation.FormatTime(at))
}

// capacities reads the capacity of the resources ids; one that is not stored has 1.
func (s *Store) capacities(ctx context.Context, ids []string) (map[string]int, error) {
	query, args, err := sqlx.In(sqlCapacities, ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID       string `db:"id"`
		Capacity int    `db:"capacity"`
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("read capacities: %w", err)
	}
	out := make(map[string]int, len(ids))
	for _, r := range rows {
		out[r.ID] = r.Capacity
	}
	return out, nil
}

// refuseResources fails a call whose items book a resource the catalogue does not have (the
// strict catalogue) or that is disabled. The first such item decides.
func (w *writeTx) refuseResources(rs []*reservation.Reservation) error {
	for i, r := range rs {
		res := w.resources[r.ResourceID]
		field := "reservation.resource_id"
		if len(rs) > 1 {
			field = fmt.Sprintf("reservations[%d].resource_id", i)
		}
		switch {
		case res.absent:
			return reservation.Errorf(reservation.ENOTFOUND, "%s: resource %q is not in the catalogue", field, r.ResourceID)
		case res.disabled:
			return reservation.ResourceDisabled(i, field, r)
		}
	}
	return nil
}
