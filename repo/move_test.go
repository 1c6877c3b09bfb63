package repo_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// TestRememberedMoveIsReadBack: two replicas on one database, the first with a conflict cache
// whose feed stalled. The second moves reservations the first made, half to a later window of
// the same resource and half to another resource; the first's cache still remembers the old
// windows. A Reserve of an old window must be written, not refused (the read-back finds the
// reservation stored elsewhere), and one of a new window refused naming the moved reservation
// as stored. Many goroutines do it at once, each on its own resource.
func TestRememberedMoveIsReadBack(t *testing.T) {
	t.Parallel()
	db, _ := repotest.NewDB(t)
	taken := stalledCache(t)
	a := repo.New(db, repo.Options{Taken: taken}) // remembers its own commits, hears nothing else
	b := repo.New(db, repo.Options{})
	ctx := context.Background()

	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			resource, to := fmt.Sprint("room-", i), fmt.Sprint("room-", i)
			if i%2 == 1 {
				to = fmt.Sprint("hall-", i)
			}
			errs <- func() error {
				made, err := a.Reserve(ctx, reservation.Book(window(resource, 10, 12)))
				if err != nil {
					return err
				}
				e := reservation.Edit{Start: base.Add(11 * time.Hour), End: base.Add(14 * time.Hour), ResourceID: to}
				moved, err := b.Update(ctx, reservation.Ref{ID: made[0].ID}, e)
				if err != nil {
					return fmt.Errorf("%s: move to %s: %w", resource, to, err)
				}
				if moved.Version != 2 || moved.ResourceID != to || !moved.End.Equal(e.End) {
					return fmt.Errorf("%s: moved %+v, want version 2 on %s to %s", resource, moved, to, e.End)
				}
				// The old window: free once the move is read back, whatever the cache says.
				free := window(resource, 10, 12)
				if to == resource {
					free = window(resource, 9, 11)
				}
				if _, err := a.Reserve(ctx, reservation.Book(free)); err != nil {
					return fmt.Errorf("%s: the window moved away from on another replica: %w", resource, err)
				}
				_, err = a.Reserve(ctx, reservation.Book(window(to, 13, 15)))
				var ce *reservation.Error
				if !errors.As(err, &ce) || ce.Code != reservation.ECONFLICT || ce.Conflicts[0].Existing.ID != made[0].ID ||
					!ce.Conflicts[0].Existing.End.Equal(e.End) {
					return fmt.Errorf("%s: the new window: got %v, want a conflict naming %s as moved", to, err, made[0].ID)
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := count(t, db, "SELECT COUNT(*) FROM reservations"); got != 2*n {
		t.Errorf("%d reservations stored, want %d", got, 2*n)
	}
	if o := repotest.Overlaps(t, db); o != 0 {
		t.Errorf("%d overlapping pairs", o)
	}
	// Each old window was proposed by the cache, and given once read back.
	if got := taken.Stats().Refused; got < n {
		t.Errorf("the cache proposed a refusal %d times, want at least %d", got, n)
	}
}
