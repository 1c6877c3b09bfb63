package reservation

import (
	"context"
	"time"
)

// Sleep pauses for d or until ctx ends, whichever comes first, and returns ctx's error if it
// ended: the pause the service's loops and retries use between attempts (lock, queue, cache,
// repo), so that each of them stops waiting when its context ends. (Loops that also wait for
// a nudge or a tick select on their own timers.)
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OrDefault returns v, or def when v is not positive: how an Options field left zero takes
// its package's default.
func OrDefault[T ~int | ~int64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
