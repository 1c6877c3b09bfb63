// Package repo stores reservations in MySQL. Every write runs in one transaction that locks the
// resource's row, checks for overlaps, writes the reservation and records the change: the
// transaction is what guarantees that no two reservations of a resource overlap.
package repo

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"reservation"
)

// Options tune a Store; the zero value is usable.
type Options struct {
	// Locker queues the writers of a resource before they reach the database. Nil: no queue,
	// the database alone serialises them.
	Locker reservation.Locker
	Logger *slog.Logger
	// Now is the clock for created_at and updated_at; nil means time.Now.
	Now func() time.Time
	// MaxConflicts bounds how many conflicting reservations a rejected Reserve names (default 10).
	MaxConflicts int
	// Retries bounds how often a transaction is run again after a deadlock or lock wait timeout
	// (default 5).
	Retries int
	// RequestRetention is how long the outcome of a call with a request id is kept for its
	// retries (default 24h).
	RequestRetention time.Duration
	// Precheck looks, without locking, for a committed reservation in the way before a
	// Reserve takes its locks, and refuses at once if there is one. It shortens the queue on
	// hot resources with many refusals, and costs one more query on every Reserve: about 50%
	// more time per Reserve through the store when nothing conflicts (BenchmarkReserveStore).
	Precheck bool
	// GroupCommit is the most Reserve calls written in one transaction (default 64; 1 writes
	// each call on its own). Calls with a request id are written on their own.
	GroupCommit int
	// Committed, when set, is called after each write commits, so that the change feed can
	// sequence the new change at once rather than at its next poll. It must not block.
	Committed func()
	// OneStatementPerTrip sends a write's statements one round trip each instead of together.
	// Galera needs it (see Galera): a multi-statement batch that a brute-force abort hits
	// midway can commit its later statements outside the transaction.
	OneStatementPerTrip bool
	// Taken, when set, remembers committed reservations: a Reserve without a request id whose
	// window it knows to be taken is refused before it queues for locks, and every write this
	// Store commits is passed to it at once.
	Taken Taken
	// HistoryRetention is how long the history (History, and a Get of a cancelled
	// reservation) keeps a change (default reservation.DefaultHistoryRetention, 400 days),
	// however short the feed's retention: the reaper prunes it (Reap).
	HistoryRetention time.Duration
	// StrictCatalogue refuses a Reserve of a resource that is not in the catalogue (ENOTFOUND)
	// instead of creating it with capacity 1 and no pool.
	StrictCatalogue bool
}

// The defaults of Options, which reservationd's flags show too.
const (
	DefaultMaxConflicts     = 10
	DefaultRetries          = 5
	DefaultRequestRetention = 24 * time.Hour
	DefaultGroupCommit      = 64
	// DefaultReapInterval is how often reservationd runs RunReaper.
	DefaultReapInterval = time.Second
)

// Taken is a memory of committed reservations: cache.Cache.
type Taken interface {
	// Overlapping returns the reservations remembered that overlap r; never a hold.
	Overlapping(r *reservation.Reservation) []*reservation.Reservation
	// Apply takes in changes just committed.
	Apply(changes ...*reservation.Change)
}

// Store implements reservation.Service on MySQL.
type Store struct {
	db     *sqlx.DB
	opts   Options
	log    *slog.Logger
	stats  struct{ retries, lockDown, conflicts, unitsFromMemory, unitsGone atomic.Int64 }
	groups committer
	index  atomic.Pointer[indexRef] // where a pool call's first try picks its units; nil: the database
	// readBack confirms the conflict cache's proposals, in one statement for concurrent calls.
	readBack readBack
}

var _ reservation.Service = (*Store)(nil)

// New returns a Store on db, opened with Open (its sessions are READ COMMITTED), whose schema
// Migrate has brought up to date.
func New(db *sqlx.DB, opts Options) *Store {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.MaxConflicts = reservation.OrDefault(opts.MaxConflicts, DefaultMaxConflicts)
	opts.Retries = reservation.OrDefault(opts.Retries, DefaultRetries)
	opts.RequestRetention = reservation.OrDefault(opts.RequestRetention, DefaultRequestRetention)
	opts.GroupCommit = reservation.OrDefault(opts.GroupCommit, DefaultGroupCommit)
	opts.HistoryRetention = reservation.OrDefault(opts.HistoryRetention, reservation.DefaultHistoryRetention)
	s := &Store{db: db, opts: opts, log: opts.Logger}
	s.groups = committer{size: opts.GroupCommit, write: s}
	return s
}

// Stats are counters since the Store was made.
type Stats struct {
	TxRetries       int64 // transactions run again after a deadlock or lock wait timeout
	LockUnavailable int64 // writes that went ahead on the database guard alone, the Locker being down
	Conflicts       int64 // Reserve calls rejected for overlap
	UnitsFromMemory int64 // pool calls' tries whose units the read index chose (UseIndex)
	UnitsGone       int64 // pool calls' tries whose units were all taken meanwhile: tried again
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{s.stats.retries.Load(), s.stats.lockDown.Load(), s.stats.conflicts.Load(), s.stats.unitsFromMemory.Load(), s.stats.unitsGone.Load()}
}

func (s *Store) now() time.Time { return reservation.Truncate(s.opts.Now()) }

// newID is a new reservation's id: a UUIDv7, so that ids grow with time.
func newID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new reservation id: %w", err)
	}
	return id.String(), nil
}

// precheck refuses rs, without locking anything, when committed reservations are in their
// way: those Taken remembers, then (with Precheck) those stored. It returns nil to go on.
func (s *Store) precheck(ctx context.Context, rs []*reservation.Reservation) error {
	if s.opts.Taken != nil {
		if err := s.refuseRemembered(ctx, rs); err != nil {
			return err
		}
	}
	if !s.opts.Precheck {
		return nil
	}
	// Holds are left to the write path: one may lapse while the call waits for its locks.
	query, args := overlapQuery(rs, time.Time{}, s.opts.MaxConflicts+1, false)
	var found []overlapRow
	if err := sqlx.SelectContext(ctx, s.db, &found, query, args...); err != nil {
		return classify(fmt.Errorf("look for conflicts: %w", err))
	}
	stored := byItem(rs, found)
	// Each row came with its resource's policy, read in the same statement: a refusal weighs
	// the rows by what held when they were read. The other items' resources are read apart.
	read := map[string]reservation.Policy{}
	for _, f := range found {
		read[f.ResourceID] = f.policy()
	}
	return s.refuseTaken(ctx, rs, func(r *reservation.Reservation) ([]*reservation.Reservation, error) {
		return stored[r], nil
	}, func() (map[string]reservation.Policy, error) { return s.policiesBeside(ctx, rs, read) })
}

// policiesBeside returns read, with the policies of the resources of rs it lacks read apart.
func (s *Store) policiesBeside(ctx context.Context, rs []*reservation.Reservation, read map[string]reservation.Policy) (map[string]reservation.Policy, error) {
	var missing []string
	for _, id := range resourcesOf(rs) {
		if _, ok := read[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return read, nil
	}
	more, err := s.policies(ctx, missing)
	if err != nil {
		return nil, err
	}
	maps.Copy(more, read)
	return more, nil
}

// refuseRemembered refuses rs when Taken remembers a reservation in the way of one of them
// and the database, read by primary key, still holds it there now. The cache only proposes:
// it may not yet have heard of a cancel made on another replica (the feed is late, or stalled),
// so a refusal rests on what one statement, run after the call began, found committed. That
// makes the conflict true at an instant between the call and its answer. The blockers the
// database no longer holds are forgotten, and the call goes on to the write path, as it does
// when the read fails. Concurrent calls share one read (readBack).
func (s *Store) refuseRemembered(ctx context.Context, rs []*reservation.Reservation) error {
	proposed := make(blockers)
	var ids []string
	for _, r := range rs {
		for _, e := range s.opts.Taken.Overlapping(r) {
			if !slices.Contains(ids, e.ID) {
				ids = append(ids, e.ID)
			}
			proposed[r] = append(proposed[r], e)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	byID, read, err := s.readBack.read(ctx, s.db, ids, s.now)
	if err != nil {
		// Not known to be taken: the write path decides.
		s.log.DebugContext(ctx, "reading remembered reservations back failed", "err", err)
		return nil
	}
	var gone []*reservation.Change
	for _, id := range ids {
		if byID[id] == nil {
			gone = append(gone, &reservation.Change{Op: reservation.OpDelete, Reservation: &reservation.Reservation{ID: id}})
		}
	}
	if len(gone) > 0 {
		s.opts.Taken.Apply(gone...) // ids are never used again: what is gone stays gone
	}
	return s.refuseTaken(ctx, rs, func(r *reservation.Reservation) ([]*reservation.Reservation, error) {
		var still []*reservation.Reservation
		for _, e := range proposed[r] {
			if h := byID[e.ID]; h != nil {
				still = append(still, h) // with its window and status as stored
			}
		}
		return still, nil
	}, func() (map[string]reservation.Policy, error) {
		// The read gave the policy of every resource with a reservation still held; the
		// other items' resources (a batch's) are read apart.
		return s.policiesBeside(ctx, rs, read)
	})
}

// refuseTaken returns the conflict error of rs when lookup finds committed reservations in
// the way of any of them, and nil when it finds none. The policies of their resources
// (policies reads them, unlocked, or gives what was read with the reservations) are asked for
// only when lookup found something: a resource of capacity N is full where N of the windows
// blocked by the reservations found overlap. What lookup finds may be fewer than are stored
// (the precheck's limit, the cache's proposals, which overlap the booked window and so miss
// the conflicts buffers alone make), never more, so a refusal holds; a policy that cannot be
// read leaves the call to the write path.
func (s *Store) refuseTaken(ctx context.Context, rs []*reservation.Reservation, lookup func(*reservation.Reservation) ([]*reservation.Reservation, error), policies func() (map[string]reservation.Policy, error)) error {
	stored := make(blockers)
	some := false
	for _, r := range rs {
		found, err := lookup(r)
		if err != nil {
			return err
		}
		stored[r] = found
		some = some || len(found) > 0
	}
	if !some {
		return nil
	}
	read, err := policies()
	if err != nil {
		s.log.DebugContext(ctx, "reading capacities and buffers failed", "err", err)
		return nil
	}
	found, truncated := s.inTheWay(rs, stored, nil, func(id string) reservation.Policy { return read[id] })
	if !hasStored(found, rs) {
		return nil // only items of the call in each other's way: the write path says so
	}
	return conflictError(rs, found, truncated)
}

// hasStored reports whether any conflict is with a stored reservation, not an item of rs.
func hasStored(cs []reservation.Conflict, rs []*reservation.Reservation) bool {
	for _, c := range cs {
		if !slices.Contains(rs, c.Existing) {
			return true
		}
	}
	return false
}

// inTheWay lists what is in the way of each of rs, in order: the stored reservations found
// for it, the call's earlier items, and others written before it in the same transaction (by
// resource), on a resource of the admission policy (capacity and buffers) policy gives. It
// keeps MaxConflicts at most, and says whether there were more.
func (s *Store) inTheWay(rs []*reservation.Reservation, stored blockers, others map[string][]*reservation.Reservation, policy func(string) reservation.Policy) ([]reservation.Conflict, bool) {
	var found []reservation.Conflict
	for i, r := range rs {
		held := append(append(slices.Clone(stored[r]), rs[:i]...), others[r.ResourceID]...)
		for _, e := range reservation.InTheWay(r, policy(r.ResourceID), held) {
			found = append(found, reservation.Conflict{Index: i, Existing: e})
		}
	}
	if len(found) > s.opts.MaxConflicts {
		return found[:s.opts.MaxConflicts], true
	}
	return found, false
}

func conflictError(rs []*reservation.Reservation, conflicts []reservation.Conflict, truncated bool) error {
	c := conflicts[0]
	msg := fmt.Sprintf("reservation of %s from %s to %s conflicts with reservation %s (%s to %s)",
		rs[c.Index].ResourceID, reservation.FormatTime(rs[c.Index].Start), reservation.FormatTime(rs[c.Index].End),
		c.Existing.ID, reservation.FormatTime(c.Existing.Start), reservation.FormatTime(c.Existing.End))
	if n := len(conflicts); n > 1 || truncated {
		more := fmt.Sprint(n - 1)
		if truncated {
			more += "+"
		}
		msg += " and " + more + " more"
	}
	return &reservation.Error{Code: reservation.ECONFLICT, Message: msg, Conflicts: conflicts, Truncated: truncated}
}

// Confirm turns a PENDING reservation into a CONFIRMED one; a hold stops expiring. A
// CONFIRMED one is returned unchanged; a BLOCKED one, or a lapsed hold, cannot be confirmed.
func (s *Store) Confirm(ctx context.Context, ref reservation.Ref) (*reservation.Reservation, error) {
	return s.modify(ctx, ref, func(r *reservation.Reservation, now time.Time) (reservation.Op, error) {
		switch {
		case r.Expired(now):
			return 0, lapsed(r)
		case r.Status == reservation.StatusConfirmed:
			return 0, nil
		case r.Status == reservation.StatusPending:
			r.Status, r.ExpiresAt = reservation.StatusConfirmed, time.Time{}
			return reservation.OpUpdate, nil
		}
		return 0, reservation.Errorf(reservation.ESTATE, "reservation %s is %s: only PENDING reservations can be confirmed", r.ID, r.Status)
	})
}

// Update changes what e names: a move (move.go) when it names the window or the resource,
// else the note of a reservation that is not a lapsed hold.
func (s *Store) Update(ctx context.Context, ref reservation.Ref, e reservation.Edit) (*reservation.Reservation, error) {
	if e.Moves() {
		return s.move(ctx, ref, e)
	}
	return s.modify(ctx, ref, func(r *reservation.Reservation, now time.Time) (reservation.Op, error) {
		if r.Expired(now) {
			return 0, lapsed(r)
		}
		if e.Note != nil {
			r.Note = *e.Note
		}
		return reservation.OpUpdate, nil
	})
}

func lapsed(r *reservation.Reservation) error {
	return reservation.Errorf(reservation.ESTATE, "hold %s expired at %s", r.ID, reservation.FormatTime(r.ExpiresAt))
}

// Cancel removes a reservation and returns it as it was removed.
func (s *Store) Cancel(ctx context.Context, ref reservation.Ref) (*reservation.Reservation, error) {
	return s.modify(ctx, ref, func(*reservation.Reservation, time.Time) (reservation.Op, error) {
		return reservation.OpDelete, nil
	})
}

// modify runs one change of a stored reservation, under its resource's locks (onLocked).
// apply edits the reservation in place and says which change it made; 0 means none, and
// nothing is written.
func (s *Store) modify(ctx context.Context, ref reservation.Ref, apply func(r *reservation.Reservation, now time.Time) (reservation.Op, error)) (*reservation.Reservation, error) {
	var out *reservation.Reservation
	err := s.onLocked(ctx, ref, "", func(w *writeTx, r *reservation.Reservation) error {
		out = r
		op, err := apply(r, w.now)
		if err != nil || op == 0 {
			return err
		}
		w.change(op, r, ref)
		if op == reservation.OpDelete {
			return w.flush(ctx, stmt{sqlDelete, []any{r.ID}})
		}
		row := toRow(r)
		return w.flush(ctx, stmt{sqlUpdate, []any{row.Status, row.Note, row.UpdatedAt, row.Version, row.ExpiresAt, row.ID}})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns a reservation by id.
func (s *Store) Get(ctx context.Context, id string) (*reservation.Reservation, error) {
	r, err := getRow(ctx, s.db, id, "")
	if err != nil {
		return nil, classify(err)
	}
	return r, nil
}

// Find returns the reservations the filter selects, in its order, leaving out lapsed holds.
func (s *Store) Find(ctx context.Context, f reservation.Filter) ([]*reservation.Reservation, error) {
	query, args := findQuery(f, s.now())
	rs, err := selectRows(ctx, s.db, query, args...)
	if err != nil {
		return nil, classify(fmt.Errorf("find reservations: %w", err))
	}
	return rs, nil
}

// FreeSlots returns the free windows of a resource, or of each enabled unit of a pool (by
// unit id, each window naming its unit); lapsed holds count as free. A free window is where a
// new reservation's blocked window meets too few of those booked (the admission rule, buffers
// included), so the reservations read are those within the buffers of the query's window.
//
// It answers only where a booking that is not BLOCKED could be made under the resource's (each
// unit's) booking rules at the store's clock (Options.Now), the clock its writes check the
// rules by (SlotQuery.Bookable): no window starts before now plus min_notice, none after now
// plus max_advance, none is shorter than min_duration. The store knows nothing of past windows
// (the service refuses them): with no min_notice a window may start before now. A disabled
// resource has no free window; in the strict catalogue, one not in it is ENOTFOUND.
func (s *Store) FreeSlots(ctx context.Context, q reservation.SlotQuery) ([]reservation.Window, error) {
	now := s.now()
	if q.ResourceID == "" && q.PoolID != "" {
		return s.poolFree(ctx, q, now)
	}
	p := reservation.Policy{Capacity: 1}
	res, err := s.GetResource(ctx, q.ResourceID)
	switch {
	case err == nil:
		var ok bool
		if q, p, ok = reservation.UnitQuery(q, res, now); !ok {
			return nil, nil // disabled (it takes no reservation), or nothing the rules admit
		}
	case reservation.ErrorCode(err) != reservation.ENOTFOUND:
		return nil, err
	case s.opts.StrictCatalogue:
		return nil, reservation.ResourceNotFound(q.ResourceID) // a Reserve of it would be NOT_FOUND too
	}
	if q.Empty() {
		return nil, nil
	}
	busy, err := s.busy(ctx, q.ResourceID, q, p)
	if err != nil {
		return nil, err
	}
	return reservation.ResourceFree(q, p, busy), nil
}

// busy reads the live reservations of the resource id whose blocked windows may meet that of a
// reservation booked inside q's window on a resource of policy p: those within its buffers
// (Policy.Gap) of q's window, by start; more than MaxFreeSlotsRows is EINVALID on end.
func (s *Store) busy(ctx context.Context, id string, q reservation.SlotQuery, p reservation.Policy) ([]*reservation.Reservation, error) {
	g := p.Gap()
	rs, err := s.Find(ctx, reservation.Filter{ResourceID: id, Start: q.Start.Add(-g), End: q.End.Add(g), Limit: MaxFreeSlotsRows + 1})
	if err == nil && len(rs) > MaxFreeSlotsRows {
		return nil, tooBusy("resource " + id)
	}
	return rs, err
}
