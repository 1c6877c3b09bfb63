package repo

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
)

// readBack reads remembered reservations back from the database by id, for many concurrent
// calls in few statements: with readsInFlight statements running, the calls that ask meanwhile
// share the next one. A call never joins a statement already sent, so what it is told was read
// after it asked.
type readBack struct {
	mu      sync.Mutex
	next    *readBatch // gathering ids, not sent yet
	running int        // statements being run
}

// readsInFlight bounds the statements readBack runs at once. Fewer statements in flight means
// more calls share each one: on rsvbench hot (16 clients), 2 gave 2,229–2,282 refusals/s where
// 4 gave 1,823–1,924, in one sitting (BENCHMARKS.md).
const readsInFlight = 2

type readBatch struct {
	ids      map[string]bool
	lead     chan struct{} // closed when the batch's first caller may send it
	done     chan struct{} // closed once held and err are set
	held     map[string]*reservation.Reservation
	policies map[string]reservation.Policy // of each resource of held, read in the same statement
	err      error
}

// read returns, of ids, those stored now and live at now, by id, and the policies (capacity
// and buffers) of their resources, by resource id, as one statement saw them.
func (rb *readBack) read(ctx context.Context, db *sqlx.DB, ids []string, now func() time.Time) (map[string]*reservation.Reservation, map[string]reservation.Policy, error) {
	rb.mu.Lock()
	b, first := rb.next, false
	if b == nil {
		b = &readBatch{ids: map[string]bool{}, lead: make(chan struct{}), done: make(chan struct{})}
		rb.next, first = b, true
	}
	for _, id := range ids {
		b.ids[id] = true
	}
	if !first {
		rb.mu.Unlock()
		<-b.done // bounded: its first caller sends it as soon as the statement before it is done
		return b.held, b.policies, b.err
	}
	if rb.running < readsInFlight {
		rb.running++
		rb.next = nil
		close(b.lead)
	}
	rb.mu.Unlock()
	<-b.lead // bounded by the statements before it
	b.held, b.policies, b.err = readHeld(ctx, db, b.ids, now())
	rb.mu.Lock()
	if n := rb.next; n != nil {
		rb.next = nil // sealed: nobody joins it from here on
		close(n.lead)
	} else {
		rb.running--
	}
	rb.mu.Unlock()
	close(b.done)
	return b.held, b.policies, b.err
}

// heldRow is a reservations row read with its resource's policy.
type heldRow struct {
	row
	policyRow
}

// readHeld reads the reservations ids that are stored and live at now, and the policies
// (capacity, at least 1, and buffers) of their resources.
func readHeld(ctx context.Context, db *sqlx.DB, ids map[string]bool, now time.Time) (map[string]*reservation.Reservation, map[string]reservation.Policy, error) {
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	// Each row comes with its resource's capacity and buffers: a refusal weighs the rows by
	// them, and one statement sees both at one instant.
	query, args, err := sqlx.In("SELECT "+prefixed("r.", columns)+", c.capacity, c.buffer_before_us, c.buffer_after_us"+
		" FROM reservations r LEFT JOIN resources c ON c.id = r.resource_id WHERE r.id IN (?) AND "+notLapsed("r."), list, now)
	if err != nil {
		return nil, nil, err
	}
	var rows []heldRow
	if err := sqlx.SelectContext(ctx, db, &rows, query, args...); err != nil {
		return nil, nil, fmt.Errorf("read %d remembered reservations: %w", len(list), err)
	}
	held := make(map[string]*reservation.Reservation, len(rows))
	policies := make(map[string]reservation.Policy, len(rows))
	for i := range rows {
		r := rows[i].reservation()
		held[r.ID] = r
		policies[r.ResourceID] = rows[i].policy()
	}
	return held, policies, nil
}
