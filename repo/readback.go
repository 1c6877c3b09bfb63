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

// readsInFlight bounds the statements readBack runs at once.
const readsInFlight = 4

type readBatch struct {
	ids  map[string]bool
	lead chan struct{} // closed when the batch's first caller may send it
	done chan struct{} // closed once held and err are set
	held map[string]*reservation.Reservation
	err  error
}

// read returns, of ids, those stored now and live at now, by id.
func (rb *readBack) read(ctx context.Context, db *sqlx.DB, ids []string, now func() time.Time) (map[string]*reservation.Reservation, error) {
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
		return b.held, b.err
	}
	if rb.running < readsInFlight {
		rb.running++
		rb.next = nil
		close(b.lead)
	}
	rb.mu.Unlock()
	<-b.lead // bounded by the statements before it
	b.held, b.err = readHeld(ctx, db, b.ids, now())
	rb.mu.Lock()
	if n := rb.next; n != nil {
		rb.next = nil // sealed: nobody joins it from here on
		close(n.lead)
	} else {
		rb.running--
	}
	rb.mu.Unlock()
	close(b.done)
	return b.held, b.err
}

// readHeld reads the reservations ids that are stored and live at now.
func readHeld(ctx context.Context, db *sqlx.DB, ids map[string]bool, now time.Time) (map[string]*reservation.Reservation, error) {
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	query, args, err := sqlx.In("SELECT "+columns+" FROM reservations WHERE id IN (?) AND "+notLapsed(""), list, now)
	if err != nil {
		return nil, err
	}
	held, err := selectRows(ctx, db, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read %d remembered reservations: %w", len(list), err)
	}
	out := make(map[string]*reservation.Reservation, len(held))
	for _, h := range held {
		out[h.ID] = h
	}
	return out, nil
}
