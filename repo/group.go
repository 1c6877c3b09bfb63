package repo

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"reservation"
	"reservation/telemetry"
)

// Group commit: concurrent Reserve calls are written together, under one Locker call for all
// their resources, in one transaction, one multi-row insert and one commit (one log flush).
// Calls for the same resource share a group too, so a hot resource takes many reservations
// per commit. Each call still gets its own outcome: a call whose window is taken, by a stored
// reservation or an earlier call of the group, gets its conflict, and the others are written.
// The calls take turns leading: the first to find no group being written writes the queue,
// and hands the lead to the next waiting call.

// errNothingToWrite ends a group's transaction whose calls were all refused.
var errNothingToWrite = errors.New("nothing to write")

// job is one Reserve call waiting to be written with others.
type job struct {
	ctx     context.Context // the call's: a job whose call ended before its group locked is not written
	rs      []*reservation.Reservation
	hold    time.Duration
	actor   string // Booking.Actor: who makes the call's reservations ("" for each one's user)
	pooled  []bool // the items of rs booked through a pool (nil: none), on a unit of pick
	pick    pick
	err     error
	done    chan struct{} // closed once the job's outcome is known
	lead    chan struct{} // closed when the job is to write the queue
	leading bool          // lead was closed; under grouper.mu
}

// grouper queues jobs and has them written in groups of at most size by commit: a job's
// caller either waits for a group to take it, or, when no group is being written, leads:
// it passes the queue to commit, group by group, until its own job is done, then hands the
// lead to the next waiting job. It knows nothing of what a job holds.
type grouper struct {
	size int
	// commit writes a group and sets each job's err, then closes its done (dropEnded
	// helps with the jobs whose call has ended).
	commit func(ctx context.Context, jobs []*job)

	mu      sync.Mutex
	queue   []*job
	leaders int // calls writing the queue now
}

// groupWriters is how many groups are written at once. Two (one running its statements while
// the other waits for its commit to reach the disk) measured slower here: 1,262-1,451 ok/s
// against 1,603-1,617 with one (rsvbench spread, 16 clients, MariaDB 10.11, same session).
const groupWriters = 1

// Do queues j, whose ctx is the caller's, and returns its outcome once a group has written it.
func (g *grouper) Do(ctx context.Context, j *job) error {
	j.done, j.lead = make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.queue = append(g.queue, j)
	if g.leaders == groupWriters {
		g.mu.Unlock()
		if err, led := g.await(ctx, j); !led {
			return err
		}
	} else {
		g.leaders++
		g.mu.Unlock()
	}
	g.lead(ctx, j)
	return j.err
}

// await waits until j is done or is to lead. It reports whether j leads; if not, j's outcome.
func (g *grouper) await(ctx context.Context, j *job) (error, bool) {
	select {
	case <-j.done:
	case <-j.lead:
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if j.leading {
		return nil, true
	}
	if ctx.Err() != nil {
		// Gone while waiting: out of the queue, or, when already in a group, written only
		// if that group locked before now (the caller cannot know, as with any deadline).
		if i := slices.Index(g.queue, j); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
		select {
		case <-j.done:
			return j.err, false
		default:
			return ctx.Err(), false
		}
	}
	return j.err, false
}

// lead writes groups from the queue until j's is written, then passes the lead on.
func (g *grouper) lead(ctx context.Context, j *job) {
	for {
		g.mu.Lock()
		n := min(len(g.queue), g.size)
		batch := slices.Clone(g.queue[:n])
		g.queue = slices.Delete(g.queue, 0, n)
		g.mu.Unlock()
		if len(batch) > 0 {
			g.commit(context.WithoutCancel(ctx), batch)
		} else {
			<-j.done // ours is in the other leader's group
		}
		select {
		case <-j.done:
			g.mu.Lock()
			if i := slices.IndexFunc(g.queue, func(w *job) bool { return !w.leading }); i >= 0 {
				g.queue[i].leading = true
				close(g.queue[i].lead)
			} else {
				g.leaders--
			}
			g.mu.Unlock()
			return
		default:
		}
	}
}

// commitGroup writes the jobs' reservations in one transaction and sets each job's outcome.
func (s *Store) commitGroup(ctx context.Context, jobs []*job) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx, end := telemetry.StartLinked(ctx, "group.commit", jobs, func(j *job) context.Context { return j.ctx }, attribute.Int("calls", len(jobs)))
	defer end(nil)
	if jobs = dropEnded(jobs); len(jobs) == 0 {
		return
	}
	var keys []string
	for _, j := range jobs {
		keys = append(keys, j.keys()...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	lockCtx, stop := untilAllEnd(ctx, jobs)
	defer stop()
	release, err := s.lock(lockCtx, keys)
	if err != nil {
		for _, j := range jobs {
			// The lock wait ends when the last call does; each such call hears its own
			// context's error (DEADLINE_EXCEEDED, not the group's cancellation).
			j.err = cmp.Or(j.ctx.Err(), err)
			close(j.done)
		}
		return
	}
	defer release()
	if jobs = dropEnded(jobs); len(jobs) == 0 {
		return
	}
	changes, err := s.inWriteTx(ctx, keys, func(w *writeTx) error { return s.admitGroup(ctx, w, jobs) })
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
		if reservation.ErrorCode(j.err) == reservation.ECONFLICT && j.pooled == nil { // a pool call counts its own
			s.stats.conflicts.Add(1)
		}
		close(j.done)
	}
}

// admitGroup writes in w the reservations of those jobs that nothing stored, and no earlier
// job of the group, is in the way of, and sets the others' conflicts.
func (s *Store) admitGroup(ctx context.Context, w *writeTx, jobs []*job) error {
	// The direct items, and a copy of each pooled item on each unit it may take.
	var all []*reservation.Reservation
	candidates := map[*job]map[*reservation.Reservation][]*reservation.Reservation{}
	refused := map[*job]map[*reservation.Reservation]error{} // by the rules of every unit
	for _, j := range jobs {
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
	for _, j := range jobs {
		j.err = nil
		if j.pooled != nil {
			// Its units, chosen beside the group's earlier calls too.
			if j.err = chooseUnits(j.rs, j.pooled, candidates[j], refused[j], stored, w.policy, taken, j.pick.all); j.err != nil {
				continue
			}
		}
		if j.err = w.refuseResources(j.rs); j.err != nil {
			continue
		}
		// On a resource of capacity N, the group's earlier calls count with the stored
		// reservations towards N at each instant (of the windows they block).
		conflicts, truncated := s.inTheWay(j.rs, stored, taken, w.policy)
		if len(conflicts) > 0 {
			j.err = conflictError(j.rs, conflicts, truncated)
			continue
		}
		w.create(j.rs, j.hold, j.actor)
		for _, r := range j.rs {
			taken[r.ResourceID] = append(taken[r.ResourceID], r)
		}
		rows = append(rows, j.rs...)
	}
	if len(rows) == 0 {
		return errNothingToWrite // roll back the resource rows made for the rejected
	}
	return w.flush(ctx, insertReservations(rows))
}

// keys are the resources j's call locks: its items', and its pooled items' units to choose
// among.
func (j *job) keys() []string {
	if j.pooled != nil {
		return pooledKeys(j.rs, j.pooled, j.pick)
	}
	return resourcesOf(j.rs)
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

// dropEnded ends the jobs whose call has ended, with its error, and returns the others.
func dropEnded(jobs []*job) []*job {
	return slices.DeleteFunc(jobs, func(j *job) bool {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			close(j.done)
			return true
		}
		return false
	})
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
