package repo

// The write pipeline. Every booking write is a job through this one path: a Reserve, a
// ReserveBatch, a pool booking, a call with a request id and each round of a series
// (series.go). A job takes these steps, in this order:
//
//  1. prepare (Store.run): new ids and versions, normalized copies; a request id's
//     fingerprint.
//  2. lookup (Store.run): a call with a request id whose outcome is saved gets it, without
//     any lock (request.go).
//  3. precheck (Store.run): a window that committed reservations are known to take is refused
//     before any lock (Store.precheck). Not for pool calls (step 4 is their precheck) nor calls
//     with a request id (their refusal is an outcome to save, under the locks).
//  4. pick (Store.run): a pool item's units to choose among, read without locks (pool.go:
//     Store.pickUnits).
//  5. queue (committer.do): the job joins a group of concurrent jobs, at most
//     Options.GroupCommit; a group of one is a group. Groups whose resources differ may be
//     written side by side (groupWriters); a resource's jobs are written in the order they
//     queued.
//  6. lock (Store.writeGroup): the Locker's locks, then the resources rows, of every job of
//     the group, in one sorted order (write.go: inWriteTx).
//  7. admit (Store.admit), job by job, under the locks: the request's outcome, saved by a
//     concurrent call meanwhile; the pool item's unit; the resources' refusals (disabled, not
//     in the catalogue, booking rules); the admission rule beside what is stored and the
//     group's earlier jobs. One read finds what is stored in the way of every job.
//  8. flush (writeTx.flush): one round trip inserts the group's reservations, moves its
//     resources' versions on, records the changes and the history, and saves the outcomes of
//     its request ids; one commit.
//  9. finish (Store.run): a pool job whose picked units were all taken meanwhile picks again
//     (from step 4); a request's conflict is saved as its outcome (not a pool call's, as
//     before); a refusal is counted, once.
//
// From the gRPC handler to the SQL, seven hops over three files: service.Server.Reserve
// (service/server.go) → Store.Reserve → Store.run → committer.do → Store.writeGroup →
// Store.inWriteTx (write.go: the transaction, the resources rows locked) → Store.admit (here)
// → writeTx.flush (write.go), which sends the group's statements.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"reservation"
	"reservation/telemetry"

	"github.com/go-sql-driver/mysql"
)

// job is one booking write: a call's reservations and what they are made with, and, once a
// group has written it, its outcome.
type job struct {
	ctx    context.Context // the call's: a job whose call ended before its group locked is not written
	rs     []*reservation.Reservation
	hold   time.Duration
	actor  string   // Booking.Actor: who makes the call's reservations ("" for each one's user)
	req    *request // the call's request id, if any
	pooled []bool   // the items of rs booked through a pool (nil: none), on a unit of pick
	pick   pick
	keys   []string // the resources the job locks, sorted (set by Store.run)

	err     error
	done    chan struct{} // closed once the job's outcome is known
	lead    chan struct{} // closed when the job is to write the queue
	leading bool          // lead was closed; under committer.mu
}

// errAgain sends a job back to the queue, unwritten: another job of its group has the same
// request id, and the next group will find that one's outcome.
var errAgain = errors.New("queue the job again")

// errNothingToWrite ends a group's transaction whose jobs were all refused.
var errNothingToWrite = errors.New("nothing to write")

// Reserve makes the booking's reservations all or none. Callers validate them first; Reserve
// assigns ids, timestamps, versions and hold expiries, and returns the stored reservations in
// the order given. A booking with a request id that was seen before gets that call's outcome.
func (s *Store) Reserve(ctx context.Context, b reservation.Booking) ([]*reservation.Reservation, error) {
	return s.run(ctx, b, nil)
}

// run takes b's job through the pipeline's steps. req, when not nil, is the request the call
// is made under instead of one of b's request id: a series' (series.go), whose parameters and
// outcome are the series'.
func (s *Store) run(ctx context.Context, b reservation.Booking, req *request) ([]*reservation.Reservation, error) {
	// 1. prepare
	if len(b.Reservations) == 0 {
		return nil, reservation.Errorf(reservation.EINVALID, "no reservation to make")
	}
	out, err := newReservations(b.Reservations)
	if err != nil {
		return nil, err
	}
	if req == nil && b.RequestID != "" {
		made := reservation.Booking{Reservations: out, Hold: b.Hold} // normalized, before any unit is chosen
		req = &request{id: b.RequestID, fingerprint: made.Fingerprint()}
	}
	j := &job{ctx: ctx, rs: out, hold: b.Hold, actor: b.Actor, req: req, pooled: poolItems(out)}
	err = func() error {
		// 2. lookup, 3. precheck
		if j.req != nil {
			// A retry of a call that is done needs no lock.
			if done, err := s.lookup(ctx, s.db, j.req, s.now()); done || err != nil {
				return err
			}
		} else if j.pooled == nil {
			if err := s.precheck(ctx, j.rs); err != nil {
				return err
			}
		}
		for try := 0; ; try++ {
			// 4. pick
			if j.pooled != nil {
				if err := s.pickUnits(ctx, j, try); err != nil {
					return err
				}
			} else {
				j.keys = resourcesOf(j.rs)
			}
			// 5 to 8: queue, lock, admit, flush
			err := s.groups.do(ctx, j)
			// 9. finish
			if err != nil && j.pooled != nil {
				unassign(j.rs, j.pooled)
			}
			if errors.Is(err, errUnitsGone) {
				s.stats.unitsGone.Add(1)
				continue
			}
			if errors.Is(err, errAgain) {
				continue
			}
			if reservation.ErrorCode(err) == reservation.ECONFLICT && j.req != nil && !j.req.rounds && j.pooled == nil {
				// The same call again must meet the same conflict, even once the way is clear.
				// (Not a pool call's: a direct item of its batch in the way of every unit.)
				var e *reservation.Error
				errors.As(err, &e)
				if serr := saveOutcome(ctx, s.db, j.req, outcome{Conflict: e, SeriesID: j.req.seriesID}, s.now()); serr != nil && !isDupKey(serr) {
					s.log.WarnContext(ctx, "saving the outcome of a request failed", "request_id", j.req.id, "err", serr)
				}
			}
			return err
		}
	}()
	// 9. finish
	if reservation.ErrorCode(err) == reservation.ECONFLICT {
		s.stats.conflicts.Add(1) // the one place a refusal is counted
	}
	switch {
	case err != nil:
		return nil, err
	case req != nil && req.out != nil:
		return req.result()
	}
	return out, nil
}

// committer queues jobs and writes them in groups of at most size (Store.writeGroup): a job's
// caller either waits for a group to take it, or, when fewer than groupWriters groups are
// being written, leads: it takes groups from the queue and writes them until its own job is
// done, then hands the lead to the next waiting job. A group takes no job whose resources
// another group being written holds, nor one behind a job left in the queue for that, so the
// groups written side by side never wait for each other's locks, and a resource's jobs are
// written in the order they queued.
type committer struct {
	size  int
	write groupWriter

	mu      sync.Mutex
	queue   []*job
	leaders int            // callers writing groups now
	busy    map[string]int // the resources of the groups being written
	freed   chan struct{}  // closed, and replaced, when a group is written
}

// groupWriter writes a group: *Store; a test's fake in group_test.go. It sets each job's
// outcome and returns what releases the group's locks (the Locker's), which the committer
// calls once it no longer holds up the next group: a leader whose job is done passes the lead
// on first, so that round trip is off the path of every later group.
type groupWriter interface {
	writeGroup(ctx context.Context, jobs []*job) (unlock func())
}

// groupWriters is how many groups are written at once, each on resources none of the others
// holds. Two (one running its statements while the other waits for its commit to reach the
// disk) made groups half as large, so more work per reservation (rsvbench spread, 16 clients,
// MariaDB 10.11, one sitting alternating: 0.30 commits, 0.7 INSERT statements and 1.72 KB
// received per reservation against 0.20, 0.4 and 1.62 KB with one), and no more reservations
// per second on a loaded machine.
const groupWriters = 1

// do queues j, whose ctx is the caller's, and returns its outcome once a group has written it.
// A committer of size 1 writes each job as its own group, at once.
func (c *committer) do(ctx context.Context, j *job) error {
	j.done, j.lead, j.leading, j.err = make(chan struct{}), make(chan struct{}), false, nil
	if c.size <= 1 {
		c.write.writeGroup(context.WithoutCancel(ctx), []*job{j})()
		return j.err
	}
	c.mu.Lock()
	c.queue = append(c.queue, j)
	if c.leaders == groupWriters {
		c.mu.Unlock()
		if !c.await(ctx, j) {
			return j.err
		}
	} else {
		c.leaders++
		c.mu.Unlock()
	}
	// Lead: write groups from the queue until j's is written, then pass the lead on. The
	// resources of a group written stay busy until its locks are released (unlock).
	for {
		c.mu.Lock()
		group, held, freed := c.take()
		c.mu.Unlock()
		unlock := func() {}
		if len(group) > 0 {
			release := c.write.writeGroup(context.WithoutCancel(ctx), group)
			unlock = func() {
				release()
				c.release(held)
			}
		} else {
			select {
			case <-j.done: // ours is in another leader's group
			case <-freed: // ours waits for resources another group holds
			case <-ctx.Done():
				// Gone while ours waits: out of the queue, or, when already in another
				// leader's group, its outcome.
				c.mu.Lock()
				if i := slices.Index(c.queue, j); i >= 0 {
					c.queue = slices.Delete(c.queue, i, i+1)
					j.err = ctx.Err()
					close(j.done)
				}
				c.mu.Unlock()
				<-j.done
			}
		}
		select {
		case <-j.done:
			c.mu.Lock()
			if i := slices.IndexFunc(c.queue, func(w *job) bool { return !w.leading }); i >= 0 {
				c.queue[i].leading = true
				close(c.queue[i].lead)
			} else {
				c.leaders--
			}
			c.mu.Unlock()
			unlock()
			return j.err
		default:
			unlock()
		}
	}
}

// await waits until j is done or is to lead, and reports whether it leads. When it does not,
// j.err is its outcome (its caller's context error, should that end first).
func (c *committer) await(ctx context.Context, j *job) (leads bool) {
	select {
	case <-j.done:
	case <-j.lead:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.leading {
		return true
	}
	if ctx.Err() != nil {
		// Gone while waiting: out of the queue, or, when already in a group, written only
		// if that group locked before now (the caller cannot know, as with any deadline).
		if i := slices.Index(c.queue, j); i >= 0 {
			c.queue = slices.Delete(c.queue, i, i+1)
		}
		select {
		case <-j.done:
		default:
			j.err = ctx.Err()
		}
	}
	return false
}

// take removes from the queue, in order, the next group: at most size jobs, none on a
// resource a group being written holds or a job left in the queue before it needs. It marks
// their resources busy and returns them (for release: a job done may pick other units at
// once), and what is closed when a group is written. Under mu.
func (c *committer) take() (group []*job, held []string, freed chan struct{}) {
	if c.busy == nil {
		c.busy, c.freed = map[string]int{}, make(chan struct{})
	}
	var left map[string]bool // the resources of the jobs left in the queue
	c.queue = slices.DeleteFunc(c.queue, func(w *job) bool {
		if len(group) == c.size {
			return false
		}
		for _, k := range w.keys {
			if c.busy[k] > 0 || left[k] {
				if left == nil {
					left = map[string]bool{}
				}
				for _, k := range w.keys {
					left[k] = true
				}
				return false
			}
		}
		group = append(group, w)
		return true
	})
	for _, w := range group {
		held = append(held, w.keys...)
	}
	for _, k := range held {
		c.busy[k]++
	}
	return group, held, c.freed
}

// release frees the resources held by a group written, and wakes the leaders waiting for them.
func (c *committer) release(held []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range held {
		if c.busy[k]--; c.busy[k] == 0 {
			delete(c.busy, k)
		}
	}
	close(c.freed)
	c.freed = make(chan struct{})
}

// writeGroup writes the jobs' reservations in one transaction and sets each job's outcome:
// steps 6 to 8. It returns what releases the Locker's locks it took.
func (s *Store) writeGroup(ctx context.Context, jobs []*job) (unlock func()) {
	unlock = func() {}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx, end := telemetry.StartLinked(ctx, "group.commit", jobs, func(j *job) context.Context { return j.ctx }, attribute.Int("calls", len(jobs)))
	defer end(nil)
	if jobs = dropEnded(jobs); len(jobs) == 0 {
		return unlock
	}
	var keys []string
	for _, j := range jobs {
		keys = append(keys, j.keys...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	lockCtx, stop := untilAllEnd(ctx, jobs)
	defer stop()
	release, err := s.lock(lockCtx, keys)
	if err != nil {
		for _, j := range jobs {
			j.err = err
			if cerr := j.ctx.Err(); cerr != nil && errors.Is(err, context.Canceled) {
				j.err = cerr // the wait ended with the calls: each gets its own call's end
			}
			close(j.done)
		}
		return unlock
	}
	if jobs = dropEnded(jobs); len(jobs) == 0 {
		return release
	}
	changes, err := s.inWriteTx(ctx, keys, func(w *writeTx) error { return s.admit(ctx, w, jobs) })
	if errors.Is(err, errNothingToWrite) {
		err = nil
	}
	if err == nil && len(changes) > 0 {
		s.committed()
		s.remember(changes) // before any caller hears of its reservation
	}
	for _, j := range jobs {
		if err != nil {
			j.err = err
		}
		close(j.done)
	}
	return release
}

// admit is the one admission routine (step 7): it writes in w the reservations of those jobs
// that nothing stored, and no earlier job of the group, is in the way of, with the outcomes
// of their request ids, and sets each job's outcome.
func (s *Store) admit(ctx context.Context, w *writeTx, jobs []*job) error {
	// The outcomes saved by concurrent calls with a job's request id. Under the locks, such a
	// call has either committed its outcome or not started; one on other units (a pool's)
	// that saves second fails on the duplicate key, runs again, and finds the first's here.
	var live []*job
	ids := map[string]bool{}
	for _, j := range jobs {
		j.err = nil
		if j.req != nil {
			if ids[j.req.id] {
				j.err = errAgain
				continue
			}
			ids[j.req.id] = true
			j.req.out = nil
			done, err := s.lookup(ctx, w.tx, j.req, w.now)
			switch {
			case isRefusal(err):
				j.err = err
				continue
			case err != nil:
				// A failure of the transaction (a deadlock, a certification conflict: classify
				// makes these reservation.Errors too) ends the whole group, which runs again:
				// its statements would otherwise go on outside the rolled-back transaction.
				return err
			case done:
				continue
			}
		}
		live = append(live, j)
	}
	// One read for every job: the direct items, and a copy of each pooled item on each unit
	// it may take.
	var all []*reservation.Reservation
	candidates := map[*job]map[*reservation.Reservation][]*reservation.Reservation{}
	refused := map[*job]map[*reservation.Reservation]error{} // by the rules of every unit
	for _, j := range live {
		if j.pooled == nil {
			all = append(all, j.rs...)
			continue
		}
		for i, r := range j.rs {
			if !j.pooled[i] {
				all = append(all, r)
			}
		}
		var copies []*reservation.Reservation
		candidates[j], copies, refused[j] = candidatesOf(j.rs, j.pooled, j.pick.units, w.resources, w.now)
		all = append(all, copies...)
	}
	stored := blockers{}
	if len(all) > 0 {
		var err error
		if stored, err = w.findInTheWay(ctx, all); err != nil {
			return err
		}
	}
	taken := map[string][]*reservation.Reservation{} // written earlier in this group, by resource
	var rows []*reservation.Reservation
	var outcomes []stmt
	for _, j := range live {
		if j.pooled != nil {
			// Its units, chosen beside the group's earlier jobs too.
			if j.err = chooseUnits(j.rs, j.pooled, candidates[j], refused[j], stored, w.policy, taken, j.pick.all); j.err != nil {
				continue
			}
		}
		if j.err = w.refuseResources(j.rs); j.err != nil {
			continue
		}
		// On a resource of capacity N, the group's earlier jobs count with the stored
		// reservations towards N at each instant (of the windows they block).
		if conflicts, truncated := s.inTheWay(j.rs, stored, taken, w.policy); len(conflicts) > 0 {
			j.err = conflictError(j.rs, conflicts, truncated)
			continue
		}
		w.create(j.rs, j.hold, j.actor)
		for _, r := range j.rs {
			taken[r.ResourceID] = append(taken[r.ResourceID], r)
		}
		rows = append(rows, j.rs...)
		if j.req != nil {
			st, err := outcomeStmt(j.req, j.req.made(j.rs), w.now)
			if err != nil {
				return err
			}
			outcomes = append(outcomes, st)
		}
	}
	if len(rows) == 0 {
		return errNothingToWrite // roll back the resource rows made for the refused
	}
	return w.flush(ctx, append([]stmt{insertReservations(rows)}, outcomes...)...)
}

// newReservations copies rs, normalized, with new ids at version 1.
func newReservations(rs []*reservation.Reservation) ([]*reservation.Reservation, error) {
	out := make([]*reservation.Reservation, len(rs))
	for i, r := range rs {
		id, err := newID()
		if err != nil {
			return nil, err
		}
		c := *r
		c.Normalize()
		c.ID, c.Version = id, 1
		out[i] = &c
	}
	return out, nil
}

// resourcesOf returns the resources of rs, sorted: one global order for every lock, in
// Redis and in MySQL, so writers never deadlock.
func resourcesOf(rs []*reservation.Reservation) []string {
	keys := make([]string, 0, len(rs))
	for _, r := range rs {
		keys = append(keys, r.ResourceID)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// dropEnded ends the jobs whose call has ended, with its error, and returns the others, in
// a new slice: jobs, the group the committer took, is left as it is.
func dropEnded(jobs []*job) []*job {
	left := make([]*job, 0, len(jobs))
	for _, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			close(j.done)
			continue
		}
		left = append(left, j)
	}
	return left
}

// isRefusal reports whether err, from a request id's lookup, refuses that job alone: the id
// was used with other parameters. Errors of the database are not refusals, even where
// classify has made them reservation.Errors: they end the transaction of the whole group.
func isRefusal(err error) bool {
	var e *reservation.Error
	var me *mysql.MySQLError
	return errors.As(err, &e) && e.Code == reservation.EINVALID && !errors.As(err, &me)
}

// untilAllEnd returns a context derived from ctx that also ends once every job's call has:
// the group's lock is worth waiting for while any of them still waits.
func untilAllEnd(ctx context.Context, jobs []*job) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	var left atomic.Int64
	left.Store(int64(len(jobs)))
	for _, j := range jobs {
		stop := context.AfterFunc(j.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		context.AfterFunc(ctx, func() { stop() })
	}
	return ctx, cancel
}
