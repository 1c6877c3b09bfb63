package readindex

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"reservation"
	"reservation/repo"
	"reservation/repo/repotest"
)

// countingSource is the real store, counting the index's looks at the catalogue and its reads
// of it. While churn is set, a resource is made before every look at the mark, as an open
// catalogue's first bookings make them: the mark has moved at every look, and under every read.
type countingSource struct {
	*repo.Store
	db           *sqlx.DB
	churn        atomic.Bool
	marks, reads atomic.Int64
	made         atomic.Int64
}

func (c *countingSource) CatalogueMark(ctx context.Context) (string, error) {
	c.marks.Add(1)
	if c.churn.Load() {
		n := c.made.Add(1)
		if _, err := c.db.ExecContext(ctx, "INSERT INTO resources (id, version, max_span_us, created_at) VALUES (?, 1, 0, NOW(6))", fmt.Sprintf("churn-%d", n)); err != nil {
			return "", err
		}
	}
	return c.Store.CatalogueMark(ctx)
}

func (c *countingSource) ListResources(ctx context.Context, f reservation.ResourceFilter) ([]*reservation.Resource, error) {
	if f.After == "" {
		c.reads.Add(1) // the first page of a read of the whole catalogue
	}
	return c.Store.ListResources(ctx, f)
}

// TestCatalogueReadsBackOffWhileItChanges: while resources keep being made (as an open
// catalogue's first bookings make them), the index reads the whole catalogue once per 16 looks
// at most, not at every look; once the catalogue is still, one read takes it in and the index
// vouches for it again. Counts, not times.
func TestCatalogueReadsBackOffWhileItChanges(t *testing.T) {
	db, _ := repotest.NewDB(t)
	src := &countingSource{Store: repo.New(db, repo.Options{}), db: db}
	src.churn.Store(true)
	// 2ms instead of the default 250ms: the test needs a few hundred looks.
	x := New(src, nil, Options{CatalogueInterval: 2 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { x.watchCatalogue(ctx) })

	looks := func() int64 { return src.marks.Load() - src.reads.Load() } // a read takes the mark once more, after it
	waitFor(t, "300 looks at the catalogue", func() bool { return looks() >= 300 })
	src.churn.Store(false)
	reads, n := src.reads.Load(), looks()
	t.Logf("%d resources made during %d looks, %d reads of the catalogue", src.made.Load(), n, reads)
	if limit := 5 + n/16 + 1; reads > limit {
		t.Errorf("the catalogue was read %d times in %d looks while it changed; want at most %d", reads, n, limit)
	}

	// Still: a read is kept, and the index holds every resource made.
	waitFor(t, "the index to hold every resource made", func() bool {
		x.catMu.RLock()
		defer x.catMu.RUnlock()
		return int64(len(x.catalog)) == src.made.Load()
	})
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
