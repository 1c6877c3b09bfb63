package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// The catalogue: the resources table's descriptive columns (migration 00004) beside the lock
// row every write takes. A resource's catalogue version (catalogue_version) is bumped by
// PutResource alone; its version column stays the write counter of the change feed.

const resourceColumns = "id, pool_id, capacity, time_zone, display_name, labels, disabled, catalogue_version, created_at, updated_at, " + rulesColumns

// rulesColumns are the resources columns of a resource's buffers and booking rules
// (migration 00006), in microseconds, as rulesRow scans them.
const rulesColumns = "buffer_before_us, buffer_after_us, min_duration_us, max_duration_us, min_notice_us, max_advance_us"

// rulesRow is the rulesColumns of a resources row.
type rulesRow struct {
	BufferBefore int64 `db:"buffer_before_us"`
	BufferAfter  int64 `db:"buffer_after_us"`
	MinDuration  int64 `db:"min_duration_us"`
	MaxDuration  int64 `db:"max_duration_us"`
	MinNotice    int64 `db:"min_notice_us"`
	MaxAdvance   int64 `db:"max_advance_us"`
}

func (w rulesRow) rules() reservation.Rules {
	us := func(n int64) time.Duration { return time.Duration(n) * time.Microsecond }
	return reservation.Rules{
		BufferBefore: us(w.BufferBefore), BufferAfter: us(w.BufferAfter), MinDuration: us(w.MinDuration),
		MaxDuration: us(w.MaxDuration), MinNotice: us(w.MinNotice), MaxAdvance: us(w.MaxAdvance),
	}
}

// rulesArgs are r's rules as the values of rulesColumns.
func rulesArgs(r reservation.Rules) []any {
	return []any{r.BufferBefore.Microseconds(), r.BufferAfter.Microseconds(), r.MinDuration.Microseconds(),
		r.MaxDuration.Microseconds(), r.MinNotice.Microseconds(), r.MaxAdvance.Microseconds()}
}

const (
	sqlGetResource    = "SELECT " + resourceColumns + " FROM resources WHERE id = ?"
	sqlInsertResource = "INSERT INTO resources (id, version, max_span_us, created_at, pool_id, capacity, time_zone, display_name, labels, disabled, catalogue_version, updated_at, " +
		rulesColumns + ") VALUES (?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	sqlUpdateResource = "UPDATE resources SET pool_id = ?, capacity = ?, time_zone = ?, display_name = ?, labels = ?, disabled = ?, catalogue_version = ?, updated_at = ?, " +
		"buffer_before_us = ?, buffer_after_us = ?, min_duration_us = ?, max_duration_us = ?, min_notice_us = ?, max_advance_us = ? WHERE id = ?"
	sqlPolicies = "SELECT id, capacity, buffer_before_us, buffer_after_us FROM resources WHERE id IN (?)"
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
	rulesRow
}

func (w *resourceRow) resource() (*reservation.Resource, error) {
	r := &reservation.Resource{
		ID: w.ID, PoolID: w.PoolID, Capacity: w.Capacity, TimeZone: w.TimeZone, DisplayName: w.DisplayName,
		Disabled: w.Disabled, Version: w.Version, CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.CreatedAt.UTC(),
		Rules: w.rules(),
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
			_, err = tx.ExecContext(ctx, sqlInsertResource, append([]any{put.ID, now, put.PoolID, put.Capacity, put.TimeZone, put.DisplayName, labels, put.Disabled, put.Version, now},
				rulesArgs(put.Rules)...)...)
		} else {
			put.CreatedAt = cur.CreatedAt
			if cur.PoolID != "" && put.PoolID != cur.PoolID {
				if err := s.leavesPool(ctx, tx, put.ID, cur.PoolID, now); err != nil {
					return err
				}
			}
			if put.Capacity < cur.Capacity || put.BufferBefore > cur.BufferBefore || put.BufferAfter > cur.BufferAfter {
				if err := s.holdsFewer(ctx, tx, put.ID, reservation.PolicyOf(&put), now); err != nil {
					return err
				}
			}
			args := append([]any{put.PoolID, put.Capacity, put.TimeZone, put.DisplayName, labels, put.Disabled, put.Version, now}, rulesArgs(put.Rules)...)
			_, err = tx.ExecContext(ctx, sqlUpdateResource, append(args, put.ID)...)
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

// holdsFewer fails with ESTATE, naming the instant, when the live reservations of the
// resource that end after now do not all fit policy p (a lower capacity, or longer buffers):
// more than its capacity of the windows they block overlap at some instant.
func (s *Store) holdsFewer(ctx context.Context, tx *sqlx.Tx, id string, p reservation.Policy, now time.Time) error {
	booked, err := selectRows(ctx, tx, sqlBooked+notLapsed("")+" ORDER BY start_at, id", id, now, now)
	if err != nil {
		return fmt.Errorf("reservations booked on resource %q: %w", id, err)
	}
	capacity := max(p.Capacity, 1)
	if len(booked) <= capacity {
		return nil
	}
	var last time.Time
	for _, r := range booked {
		if _, end := p.Blocks(r); end.After(last) {
			last = end
		}
	}
	over := p
	over.Capacity = capacity + 1
	if at, in, ok := reservation.FirstFull(now, last, over, booked); ok {
		return reservation.Errorf(reservation.ESTATE, "resource %q holds %d reservations blocking %s (%s and %s among them): capacity %d with buffers %s before and %s after is below that",
			id, len(in), reservation.FormatTime(at), in[0].ID, in[1].ID, capacity, p.BufferBefore, p.BufferAfter)
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

// policies reads the admission policy (capacity and buffers) of the resources ids; one that
// is not stored has capacity 1 and no buffers.
func (s *Store) policies(ctx context.Context, ids []string) (map[string]reservation.Policy, error) {
	query, args, err := sqlx.In(sqlPolicies, ids)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		ID string `db:"id"`
		policyRow
	}
	if err := sqlx.SelectContext(ctx, s.db, &rows, query, args...); err != nil {
		return nil, fmt.Errorf("read capacities and buffers: %w", err)
	}
	out := make(map[string]reservation.Policy, len(ids))
	for _, r := range rows {
		out[r.ID] = r.policy()
	}
	return out, nil
}

// policyRow is a resource's admission policy as a statement reads it beside other columns;
// NULL (no resources row) is capacity 1 and no buffers.
type policyRow struct {
	Capacity     sql.NullInt64 `db:"capacity"`
	BufferBefore sql.NullInt64 `db:"buffer_before_us"`
	BufferAfter  sql.NullInt64 `db:"buffer_after_us"`
}

func (w policyRow) policy() reservation.Policy {
	return reservation.Policy{Capacity: max(int(w.Capacity.Int64), 1),
		BufferBefore: time.Duration(w.BufferBefore.Int64) * time.Microsecond, BufferAfter: time.Duration(w.BufferAfter.Int64) * time.Microsecond}
}

// refuseResources fails a call whose items book a resource the catalogue does not have (the
// strict catalogue), that is disabled, or whose booking rules refuse the item at the write's
// time (Rules.Check: RULE_VIOLATION). The first such item decides. Every write that books a
// window calls it under the resources' locks: Reserve, a batch, group commit, pools (a unit
// whose rules refuse the window is no candidate), series and moves.
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
		if err := res.rules.Check(i, r, w.now); err != nil {
			return err
		}
	}
	return nil
}
