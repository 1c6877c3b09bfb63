package repo

import "context"

// Usurp makes l stamp without winning the election, as a leader that lost its lock without
// noticing would.
func (l *Leader) Usurp(ctx context.Context) error {
	conn, err := l.db.Connx(ctx)
	l.conn = conn
	return err
}
