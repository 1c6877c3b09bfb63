package lock

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"reservation"
)

// Local is a Locker for a service that runs as a single replica: it queues the writers of a key
// within the process.
type Local struct {
	wait time.Duration

	mu    sync.Mutex
	locks map[string]*localLock // only the keys held or waited for, so the map stays small
}

// localLock is the lock on one key: a channel that holds a value while the lock is taken, so
// that a wait for it can stop at a deadline or at the end of a context.
type localLock struct {
	taken chan struct{}
	refs  int // holders and waiters; the lock leaves the map when none is left
}

var _ reservation.Locker = (*Local)(nil)

// NewLocal returns a locker whose Lock calls wait at most wait for taken locks; 0 means 5s.
func NewLocal(wait time.Duration) *Local {
	return &Local{wait: reservation.OrDefault(wait, DefaultWait), locks: make(map[string]*localLock)}
}

// Lock takes the locks on keys in the order given. It fails with EABORTED when a lock stays
// taken past the wait bound and with ctx's error when ctx ends; whatever it took is released
// before it fails.
func (l *Local) Lock(ctx context.Context, keys ...string) (reservation.Unlock, error) {
	keys = distinct(keys)
	if len(keys) == 0 {
		return func(context.Context) {}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("lock %q: %w", keys[0], err)
	}
	deadline := time.Now().Add(l.wait)
	for i, key := range keys {
		if err := l.take(ctx, key, deadline); err != nil {
			l.releaseAll(keys[:i])
			return nil, err
		}
	}

	var released atomic.Bool
	return func(context.Context) {
		if released.CompareAndSwap(false, true) {
			l.releaseAll(keys)
		}
	}, nil
}

// take takes the lock on one key, waiting for it until deadline.
func (l *Local) take(ctx context.Context, key string, deadline time.Time) error {
	m := l.ref(key)
	select {
	case m.taken <- struct{}{}:
		return nil
	default:
	}

	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case m.taken <- struct{}{}:
		return nil
	case <-t.C:
		l.unref(key, m)
		return busy(key, l.wait)
	case <-ctx.Done():
		l.unref(key, m)
		return fmt.Errorf("lock %q: %w", key, ctx.Err())
	}
}

// releaseAll releases the held keys, last first.
func (l *Local) releaseAll(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(keys) - 1; i >= 0; i-- {
		m := l.locks[keys[i]]
		<-m.taken
		l.unrefLocked(keys[i], m)
	}
}

// ref returns the lock on key, counting the caller among its users.
func (l *Local) ref(key string) *localLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.locks[key]
	if m == nil {
		m = &localLock{taken: make(chan struct{}, 1)}
		l.locks[key] = m
	}
	m.refs++
	return m
}

// unref drops the caller from the users of the lock on key.
func (l *Local) unref(key string, m *localLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unrefLocked(key, m)
}

func (l *Local) unrefLocked(key string, m *localLock) {
	if m.refs--; m.refs == 0 {
		delete(l.locks, key)
	}
}

// len returns how many keys have a lock in the map.
func (l *Local) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}

// busy is the error of a lock still taken at the wait bound.
func busy(key string, wait time.Duration) error {
	return reservation.Errorf(reservation.EABORTED, "lock %q busy for %s", key, wait)
}

// distinct returns keys without repeats, in order: a Lock call taking a key twice would wait on
// itself.
func distinct(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}
